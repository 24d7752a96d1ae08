from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import create_api_key
from app.models import Event, Sequence, SequenceStep
from tests.conftest import make_workspace_key
from tests.nurture.conftest import create_sequence

STEP = {
    "delay": {"amount": 1, "unit": "minutes"},
    "subject": "Hi",
    "body_text": "Hello",
}


async def post_sequence(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]
) -> httpx.Response:
    return await client.post("/v1/sequences", json=body, headers=auth)


class TestCreateSequence:
    async def test_created_with_ordered_steps(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await post_sequence(
            client,
            auth,
            {
                "name": "  Onboarding ",
                "steps": [
                    {
                        "purpose": "webinar_invitation",
                        "subject": "Join us, {{ first_name | friend }}",
                        "body_text": "Dear {{ full_name }},\nsee you at {{ company }}.",
                    },
                    {
                        "delay": {"amount": 1, "unit": "days"},
                        "subject": "Following up",
                        "body_text": "Still there? {{ unsubscribe_url }}",
                    },
                ],
            },
        )

        assert response.status_code == 201, response.text
        sequence = response.json()
        assert sequence["id"].startswith("seq_")
        assert sequence["object"] == "sequence"
        assert sequence["name"] == "Onboarding"
        assert sequence["status"] == "active"
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"/v1/sequences/{sequence['id']}"
        steps = sequence["steps"]
        assert [step["position"] for step in steps] == [0, 1]
        assert steps[0]["delay"] == {"amount": 0, "unit": "minutes"}
        assert steps[1]["delay"] == {"amount": 1, "unit": "days"}
        assert steps[0]["id"].startswith("step_")
        assert steps[0]["sequence_id"] == sequence["id"]
        assert steps[0]["kind"] == "email"
        assert steps[0]["purpose"] == "webinar_invitation"
        assert steps[1]["purpose"] == "follow_up"
        assert steps[0]["subject"] == "Join us, {{ first_name | friend }}"

    async def test_emits_event_with_full_state(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)

        event = (await session.scalars(select(Event))).one()

        assert event.type == "sequence.created"
        assert event.object_type == "sequence"
        assert event.data == sequence

    async def test_empty_steps(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await post_sequence(client, auth, {"name": "Empty", "steps": []})

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "steps"
        assert error["code"] == "too_short"
        assert await session.scalar(select(func.count()).select_from(Sequence)) == 0

    async def test_missing_steps(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(client, auth, {"name": "No steps"})

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "steps"
        assert response.json()["errors"][0]["code"] == "missing"

    async def test_too_many_steps(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(
            client, auth, {"name": "Long", "steps": [STEP] * 51}
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "too_long"

    async def test_negative_delay(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(
            client, auth, {"name": "Neg", "steps": [{**STEP, "delay": {"amount": -1}}]}
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "steps.0.delay.amount"
        assert error["code"] == "greater_than_equal"

    async def test_fractional_delay(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(
            client,
            auth,
            {"name": "Frac", "steps": [{**STEP, "delay": {"amount": 1.5}}]},
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "steps.0.delay.amount"

    async def test_delay_over_a_year(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(
            client,
            auth,
            {
                "name": "Late",
                "steps": [{**STEP, "delay": {"amount": 367, "unit": "days"}}],
            },
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "steps.0.delay.amount"
        assert error["code"] == "less_than_equal"

    async def test_unknown_merge_field(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await post_sequence(
            client,
            auth,
            {
                "name": "Typo",
                "steps": [
                    STEP,
                    {**STEP, "body_text": "Hi {{ frist_name }} and {{ frist_name }}"},
                ],
            },
        )

        assert response.status_code == 422
        problem = response.json()
        assert problem["code"] == "validation_failed"
        assert problem["errors"] == [
            {
                "field": "steps.1.body_text",
                "message": "Unknown merge field 'frist_name'. Use one of: "
                "company.name, lead.company, lead.email, lead.first_name, "
                "lead.full_name, lead.last_name, lead.phone, lead.title, owner.email, "
                "owner.first_name, owner.full_name, owner.last_name, "
                "unsubscribe_url.",
                "code": "unknown_merge_field",
            }
        ]
        assert await session.scalar(select(func.count()).select_from(Sequence)) == 0
        assert await session.scalar(select(func.count()).select_from(Event)) == 0

    async def test_attribute_access_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(
            client,
            auth,
            {"name": "Probe", "steps": [{**STEP, "body_text": "{{ lead.__class__ }}"}]},
        )

        # A namespaced name is valid syntax, so only the set of fields rejects it.
        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "unknown_merge_field"

    async def test_unsubscribe_url_not_in_subject(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(
            client,
            auth,
            {"name": "S", "steps": [{**STEP, "subject": "{{ unsubscribe_url }}"}]},
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "steps.0.subject"
        assert error["code"] == "unknown_merge_field"

    async def test_every_bad_field_listed(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(
            client,
            auth,
            {
                "name": "Bad",
                "steps": [
                    {**STEP, "subject": "{{ nope }}", "body_text": "{{ first_name"}
                ],
            },
        )

        fields = [error["field"] for error in response.json()["errors"]]
        codes = [error["code"] for error in response.json()["errors"]]
        assert fields == ["steps.0.subject", "steps.0.body_text"]
        assert codes == ["unknown_merge_field", "invalid_merge_field"]

    async def test_unknown_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(
            client,
            auth,
            {"name": "X", "steps": [{**STEP, "html_body": "<p>Hi</p>"}]},
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "steps.0.html_body"
        assert error["code"] == "extra_forbidden"

    async def test_unknown_step_kind(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(
            client, auth, {"name": "X", "steps": [{**STEP, "kind": "sms"}]}
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "steps.0.kind"

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("name", "n" * 201),
            ("subject", "s" * 301),
            ("body_text", "b" * 50_001),
        ],
    )
    async def test_overlong_strings(
        self, client: httpx.AsyncClient, auth: dict[str, str], field: str, value: str
    ) -> None:
        body: dict[str, Any] = {"name": "Long", "steps": [dict(STEP)]}
        if field == "name":
            body["name"] = value
        else:
            body["steps"][0][field] = value

        response = await post_sequence(client, auth, body)

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["code"] == "string_too_long"
        assert error["field"].endswith(field)

    async def test_blank_name(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(client, auth, {"name": "   ", "steps": [STEP]})

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "string_too_short"

    async def test_newline_in_subject(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(
            client,
            auth,
            {"name": "X", "steps": [{**STEP, "subject": "Hi\nBcc: all@example.com"}]},
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "steps.0.subject"

    async def test_control_character_in_body(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(
            client, auth, {"name": "X", "steps": [{**STEP, "body_text": "a\x00b"}]}
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "steps.0.body_text"

    async def test_requires_write_scope(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, headers = await make_workspace_key(session, scopes=("nurture:read",))

        response = await post_sequence(client, headers, {"name": "X", "steps": [STEP]})

        assert response.status_code == 403
        assert response.json()["missing_scope"] == "nurture:write"

    async def test_idempotency_key_replays(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        headers = {**auth, "Idempotency-Key": "seq-1"}
        body = {"name": "Once", "steps": [STEP]}

        first = await client.post("/v1/sequences", json=body, headers=headers)
        second = await client.post("/v1/sequences", json=body, headers=headers)

        assert first.status_code == 201
        assert second.status_code == 201
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json() == first.json()
        assert await session.scalar(select(func.count()).select_from(Sequence)) == 1
        assert await session.scalar(select(func.count()).select_from(SequenceStep)) == 1


class TestGetSequence:
    async def test_found_with_steps(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_sequence(client, auth)

        response = await client.get(f"/v1/sequences/{created['id']}", headers=auth)

        assert response.status_code == 200
        assert response.json() == created
        assert response.headers["etag"] == '"1"'

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_sequence(client, auth)
        _, other = await make_workspace_key(session)

        response = await client.get(f"/v1/sequences/{created['id']}", headers=other)

        assert response.status_code == 404
        assert response.json()["code"] == "sequence_not_found"

    async def test_malformed_id_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/sequences/lead_123", headers=auth)

        assert response.status_code == 404

    async def test_requires_read_scope(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_sequence(client, auth)
        workspace_id = (await session.scalars(select(Sequence.workspace_id))).one()
        key = await create_api_key(
            session, workspace_id=workspace_id, name="leads", scopes=["leads:read"]
        )
        await session.commit()

        response = await client.get(
            f"/v1/sequences/{created['id']}",
            headers={"Authorization": f"Bearer {key.secret}"},
        )

        assert response.status_code == 403


class TestListSequences:
    async def test_pages_newest_first(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = [
            await create_sequence(client, auth, name=f"Seq {i}") for i in range(3)
        ]

        first = (await client.get("/v1/sequences?limit=2", headers=auth)).json()
        second = (
            await client.get(
                f"/v1/sequences?limit=2&cursor={first['next_cursor']}", headers=auth
            )
        ).json()

        assert [item["id"] for item in first["data"]] == [
            created[2]["id"],
            created[1]["id"],
        ]
        assert first["has_more"] is True
        assert [item["id"] for item in second["data"]] == [created[0]["id"]]
        assert second["has_more"] is False
        assert second["next_cursor"] is None
        assert first["data"][0]["steps"] == created[2]["steps"]

    async def test_only_own_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        await create_sequence(client, auth)
        _, other = await make_workspace_key(session)

        page = (await client.get("/v1/sequences", headers=other)).json()

        assert page["data"] == []
