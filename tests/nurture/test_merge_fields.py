from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.nurture import merge
from app.nurture.compose import Recipient
from app.nurture.step_kinds import check_sender_address
from tests.nurture.conftest import JsonObject, SmtpServer, create_sequence
from tests.nurture.test_runner import body_of, enrollment_uuid, start
from workers.tasks import run_enrollment_step


async def post_steps(
    client: httpx.AsyncClient, auth: dict[str, str], steps: list[JsonObject]
) -> httpx.Response:
    return await client.post(
        "/v1/sequences", json={"name": "Fields", "steps": steps}, headers=auth
    )


class TestUnknownMergeField:
    @pytest.mark.parametrize(
        "field",
        ["lead.nickname", "owner.phone", "company.domain", "offer.amount", "user.name"],
    )
    async def test_rejected_per_namespace(
        self, client: httpx.AsyncClient, auth: dict[str, str], field: str
    ) -> None:
        step = {"subject": "Hi", "body_text": "Value: {{ " + field + " }}"}

        response = await post_steps(client, auth, [step])

        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert error["field"] == "steps.0.body_text"
        assert error["code"] == "unknown_merge_field"
        assert f"Unknown merge field {field!r}" in error["message"]
        assert "lead.first_name" in error["message"]

    async def test_offer_only_in_special_offer(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        step = {"subject": "Code {{ offer.code }}", "body_text": "x"}

        rejected = await post_steps(client, auth, [step])
        accepted = await post_steps(
            client, auth, [{**step, "purpose": "special_offer"}]
        )

        assert rejected.status_code == 422
        assert rejected.json()["errors"][0]["field"] == "steps.0.subject"
        suggested = rejected.json()["errors"][0]["message"].split("Use one of:")[1]
        assert "offer.code" not in suggested
        assert accepted.status_code == 201, accepted.text

    async def test_offer_not_in_task(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        task = {"kind": "task", "title": "Send {{ offer.code }}"}

        response = await post_steps(client, auth, [task])

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "steps.0.title"

    async def test_every_namespace_accepted(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        names = [name for name in merge.COMMON_FIELDS]
        body = " ".join("{{ " + name + " }}" for name in names)

        response = await post_steps(
            client, auth, [{"subject": body[:300], "body_text": body}]
        )

        assert response.status_code == 201, response.text


class TestMergeValues:
    def test_owner_name_split(self) -> None:
        recipient = Recipient(
            email="ada@example.com",
            first_name="Ada",
            last_name=None,
            company="Engines",
            title=None,
            phone=None,
            owner_name="Grace Brewster Hopper",
            owner_email="grace@acme.example",
            workspace_name="Acme",
        )

        values = merge.lead_values(recipient)

        assert values["owner.first_name"] == "Grace"
        assert values["owner.last_name"] == "Brewster Hopper"
        assert values["owner.full_name"] == "Grace Brewster Hopper"
        assert values["owner.email"] == "grace@acme.example"
        assert values["company.name"] == "Acme"
        assert values["lead.company"] == "Engines"
        assert values["company"] == "Engines"
        assert values["lead.full_name"] == "Ada"

    def test_no_owner_is_empty(self) -> None:
        recipient = Recipient(
            email="ada@example.com",
            first_name=None,
            last_name=None,
            company=None,
            title=None,
            phone=None,
        )

        values = merge.lead_values(recipient)

        assert values["owner.first_name"] is None
        assert values["owner.last_name"] is None
        assert values["owner.email"] is None

    def test_offer_values(self) -> None:
        assert merge.offer_values({"code": "SAVE20"}) == {
            "offer.code": "SAVE20",
            "offer.discount": None,
            "offer.expires_at": None,
        }


class TestRenderedBySend:
    async def test_namespaces_and_aliases(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        owner = await client.post(
            "/v1/users",
            json={"name": "Grace Hopper", "email": "grace@acme.example"},
            headers=auth,
        )
        assert owner.status_code == 201, owner.text
        steps: list[JsonObject] = [
            {
                "subject": "{{ lead.first_name }} meets {{ owner.first_name }}",
                "body_text": "From {{ owner.full_name }} <{{ owner.email }}> at "
                "{{ company.name }} to {{ first_name }} of {{ lead.company }}.",
            }
        ]
        enrollment = await start(client, auth, steps=steps, owner_id=owner.json()["id"])

        await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        [message] = smtp_server.messages
        assert message["Subject"] == "Ada meets Grace"
        assert body_of(message).startswith(
            "From Grace Hopper <grace@acme.example> at Acme Test to Ada of "
            "Analytical Engines.\n"
        )


class TestSenderAddress:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("sales@acme.example", "sales@acme.example"),
            ("Acme Sales <sales@acme.example>", "Acme Sales <sales@acme.example>"),
            # email-validator (2.4) lower-cases the whole address when normalizing.
            ("Sales@ACME.example", "sales@acme.example"),
        ],
    )
    def test_valid(self, value: str, expected: str) -> None:
        assert check_sender_address(value) == expected

    @pytest.mark.parametrize(
        "value",
        [
            "not an address",
            "a@acme.example, b@acme.example",
            "sales@acme.example\r\nBcc: victim@example.com",
            "Acme <sales@acme.example>\nX-Injected: 1",
            "sales@",
            "sales@localhost",
            # Longer before the @-sign than the 64 octets SMTP allows.
            "a" * 65 + "@acme.example",
        ],
    )
    def test_invalid(self, value: str) -> None:
        with pytest.raises(ValueError):
            check_sender_address(value)

    async def test_rejected_at_create(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/sequences",
            json={
                "name": "Bad sender",
                "mail_from": "sales@acme.example\r\nBcc: victim@example.com",
                "steps": [{"subject": "Hi", "body_text": "x"}],
            },
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "mail_from"

    async def test_headers_sent(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        sequence = await create_sequence(client, auth)
        await client.patch(
            f"/v1/sequences/{sequence['id']}",
            json={
                "mail_from": "Ada's Rep <rep@acme.example>",
                "reply_to": "replies@acme.example",
            },
            headers=auth,
        )
        lead = await client.post(
            "/v1/leads", json={"email": "lin@example.com"}, headers=auth
        )
        enrollment = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollments",
            json={"lead_id": lead.json()["id"]},
            headers=auth,
        )

        await run_enrollment_step(job_context, enrollment_uuid(enrollment.json()))

        [message] = smtp_server.messages
        assert message["From"] == "Ada's Rep <rep@acme.example>"
        assert message["Reply-To"] == "replies@acme.example"
        assert message["Message-ID"].endswith("@acme.example>")

    async def test_setting_used_without_sender(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth)

        await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        [message] = smtp_server.messages
        assert message["From"] == "Acme Sales <sales@acme.example>"
        assert message["Reply-To"] is None
