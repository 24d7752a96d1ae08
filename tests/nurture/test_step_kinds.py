from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvalidInput
from app.models import Sequence, SequenceStep
from app.nurture.schemas import WebhookStepCreate
from app.nurture.step_kinds import STRICT_URL_POLICY, check_step_urls
from tests.nurture.conftest import JsonObject, SmtpServer
from tests.nurture.test_runner import enrollment_uuid, fetch, make_due, start
from workers.tasks import run_enrollment_step

EMAIL: JsonObject = {"kind": "email", "subject": "Hi", "body_text": "Hello."}
TASK: JsonObject = {
    "kind": "task",
    "title": "Call {{ lead.full_name }}",
    "body": "Ask about {{ lead.company | their team }}.",
    "due_in_days": 3,
}
WEBHOOK: JsonObject = {
    "kind": "webhook",
    "url": "https://mail.example.com/hooks/nurture",
    "headers": {"X-Api-Key": "abc"},
}
WAIT: JsonObject = {"kind": "wait", "delay": {"amount": 1, "unit": "days"}}


async def post_steps(
    client: httpx.AsyncClient, auth: dict[str, str], steps: list[JsonObject]
) -> httpx.Response:
    return await client.post(
        "/v1/sequences", json={"name": "Kinds", "steps": steps}, headers=auth
    )


def first_error(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    errors: list[dict[str, str]] = response.json()["errors"]
    return errors[0]


class TestStepKinds:
    async def test_every_kind_saved(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await post_steps(client, auth, [EMAIL, TASK, WEBHOOK, WAIT])

        assert response.status_code == 201, response.text
        email, task, webhook, wait = response.json()["steps"]
        assert email["kind"] == "email"
        assert email["purpose"] == "follow_up"
        assert task["kind"] == "task"
        assert task["title"] == "Call {{ lead.full_name }}"
        assert task["due_in_days"] == 3
        assert task["subject"] is None
        assert task["purpose"] is None
        assert webhook["url"] == "https://mail.example.com/hooks/nurture"
        assert webhook["headers"] == {"X-Api-Key": "abc"}
        assert wait["kind"] == "wait"
        assert wait["delay"] == {"amount": 1, "unit": "days"}
        rows = (
            await session.scalars(select(SequenceStep).order_by(SequenceStep.position))
        ).all()
        assert rows[0].config == {}
        assert rows[1].config == {
            "title": "Call {{ lead.full_name }}",
            "body": "Ask about {{ lead.company | their team }}.",
            "due_in_days": 3,
        }
        assert rows[2].config == {
            "url": "https://mail.example.com/hooks/nurture",
            "headers": {"X-Api-Key": "abc"},
        }
        assert rows[3].config == {}
        assert rows[3].subject is None

    async def test_kind_defaults_to_email(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_steps(client, auth, [{"subject": "Hi", "body_text": "x"}])

        assert response.status_code == 201, response.text
        assert response.json()["steps"][0]["kind"] == "email"

    async def test_wait_takes_no_content(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_steps(client, auth, [EMAIL, {**WAIT, "subject": "Hi"}])

        error = first_error(response)
        assert error["field"] == "steps.1.subject"
        assert error["code"] == "extra_forbidden"

    async def test_email_fields_not_on_task(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await post_steps(client, auth, [{**TASK, "body_text": "x"}])

        assert first_error(response)["field"] == "steps.0.body_text"
        assert await session.scalar(select(func.count()).select_from(Sequence)) == 0

    @pytest.mark.parametrize(
        "step", [None, 7, "email", [EMAIL], {**EMAIL, "kind": ["email"]}]
    )
    async def test_step_not_an_object(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        step: object,
    ) -> None:
        response = await client.post(
            "/v1/sequences", json={"name": "Kinds", "steps": [step]}, headers=auth
        )

        error = first_error(response)
        assert error["field"] == "steps.0.kind"
        assert error["code"] == "invalid_step_kind"
        assert await session.scalar(select(func.count()).select_from(Sequence)) == 0


class TestTaskValidation:
    @pytest.mark.parametrize(
        ("change", "field", "code"),
        [
            ({"title": None}, "steps.1.title", "string_type"),
            ({"title": ""}, "steps.1.title", "string_too_short"),
            ({"title": "t" * 201}, "steps.1.title", "string_too_long"),
            ({"title": "Call\nnow"}, "steps.1.title", "value_error"),
            ({"due_in_days": 366}, "steps.1.due_in_days", "less_than_equal"),
            ({"due_in_days": -1}, "steps.1.due_in_days", "greater_than_equal"),
            ({"due_in_days": "3"}, "steps.1.due_in_days", "int_type"),
            ({"body": "b" * 10_001}, "steps.1.body", "string_too_long"),
        ],
    )
    async def test_invalid(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        change: JsonObject,
        field: str,
        code: str,
    ) -> None:
        response = await post_steps(client, auth, [EMAIL, {**TASK, **change}])

        error = first_error(response)
        assert error["field"] == field
        assert error["code"] == code

    async def test_title_missing(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        task = {key: value for key, value in TASK.items() if key != "title"}

        response = await post_steps(client, auth, [task])

        error = first_error(response)
        assert error["field"] == "steps.0.title"
        assert error["message"] == "This field is required. Add it to the request."

    async def test_unknown_merge_field_in_body(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_steps(
            client, auth, [{**TASK, "body": "See {{ unsubscribe_url }}"}]
        )

        error = first_error(response)
        assert error["field"] == "steps.0.body"
        assert error["code"] == "unknown_merge_field"


class TestWebhookValidation:
    @pytest.mark.parametrize(
        ("change", "field", "fragment"),
        [
            ({"url": "ftp://example.com/x"}, "steps.0.url", "http or https"),
            ({"url": "https://user:pw@example.com/"}, "steps.0.url", "credentials"),
            ({"url": "example.com/hook"}, "steps.0.url", "scheme"),
            ({"url": "https://example.com/a b"}, "steps.0.url", "whitespace"),
            ({"headers": {"Host": "evil.example"}}, "steps.0.headers", "Host"),
            ({"headers": {"content-length": "1"}}, "steps.0.headers", "sender"),
            ({"headers": {"Webhook-Signature": "v1,x"}}, "steps.0.headers", "sender"),
            ({"headers": {"Bad Name": "x"}}, "steps.0.headers", "valid header name"),
            ({"headers": {"X-A": "1\r\nX-B: 2"}}, "steps.0.headers", "control"),
            ({"headers": {"X-A": "v" * 1001}}, "steps.0.headers", "longer than"),
            ({"headers": {"X-A": "1", "x-a": "2"}}, "steps.0.headers", "twice"),
            (
                {"headers": {f"X-{index}": "v" for index in range(21)}},
                "steps.0.headers",
                "at most 20",
            ),
        ],
    )
    async def test_invalid(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        change: JsonObject,
        field: str,
        fragment: str,
    ) -> None:
        response = await post_steps(client, auth, [{**WEBHOOK, **change}])

        error = first_error(response)
        assert error["field"] == field
        assert fragment in error["message"]

    async def test_url_missing(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_steps(client, auth, [EMAIL, {"kind": "webhook"}])

        assert first_error(response)["field"] == "steps.1.url"

    async def test_headers_optional(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_steps(
            client, auth, [{"kind": "webhook", "url": "http://a.example"}]
        )

        assert response.status_code == 201, response.text
        assert response.json()["steps"][0]["headers"] == {}

    @pytest.mark.parametrize(
        "url",
        [
            "http://169.254.169.254/latest/meta-data",
            "http://[fd00:ec2::254]/",
            "https://10.0.0.5/hook",
            "http://192.168.1.1:8080/hook",
            "http://[::1]:9000/hook",
        ],
    )
    async def test_private_address_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        url: str,
    ) -> None:
        response = await post_steps(client, auth, [EMAIL, {**WEBHOOK, "url": url}])

        error = first_error(response)
        assert error["field"] == "steps.1.url"
        assert error["code"] == "webhook_url_not_allowed"
        assert await session.scalar(select(func.count()).select_from(Sequence)) == 0

    async def test_allowed_private_host_saved(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        # The test settings allow 127.0.0.1 and localhost.
        response = await post_steps(
            client, auth, [{**WEBHOOK, "url": "http://127.0.0.1:9/hook"}]
        )

        assert response.status_code == 201, response.text

    async def test_private_address_in_new_version(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await post_steps(client, auth, [EMAIL])
        sequence = created.json()

        response = await client.patch(
            f"/v1/sequences/{sequence['id']}",
            json={"steps": [EMAIL, {**WEBHOOK, "url": "http://169.254.169.254/"}]},
            headers={**auth, "If-Match": '"1"'},
        )

        assert first_error(response)["field"] == "steps.1.url"
        again = await client.get(f"/v1/sequences/{sequence['id']}", headers=auth)
        assert again.json()["latest_version"] == 1


class TestCheckStepUrls:
    @pytest.mark.parametrize(
        "url",
        ["http://localhost:8000/hook", "http://api.localhost/", "http://127.0.0.1/"],
    )
    def test_strict_policy_rejects_loopback(self, url: str) -> None:
        step = WebhookStepCreate(kind="webhook", url=url)

        with pytest.raises(InvalidInput) as raised:
            check_step_urls([step], STRICT_URL_POLICY)

        [error] = raised.value.errors
        assert error["field"] == "steps.0.url"
        assert error["code"] == "webhook_url_not_allowed"

    def test_host_names_left_to_connect_time(self) -> None:
        step = WebhookStepCreate(kind="webhook", url="https://hooks.example.com/x")

        check_step_urls([step], STRICT_URL_POLICY)


class TestEmailValidation:
    async def test_unknown_purpose(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_steps(client, auth, [{**EMAIL, "purpose": "spam"}])

        assert first_error(response)["field"] == "steps.0.purpose"

    async def test_subject_missing(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_steps(client, auth, [{"kind": "email", "body_text": "x"}])

        assert first_error(response)["field"] == "steps.0.subject"

    @pytest.mark.parametrize("purpose", ["newsletter", "webinar_invitation"])
    async def test_purposes_accepted(
        self, client: httpx.AsyncClient, auth: dict[str, str], purpose: str
    ) -> None:
        response = await post_steps(client, auth, [{**EMAIL, "purpose": purpose}])

        assert response.status_code == 201, response.text
        assert response.json()["steps"][0]["purpose"] == purpose


class TestRunnerOtherKinds:
    async def test_advances_past_wait_and_task(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth, steps=[WAIT, TASK, EMAIL])

        outcomes = []
        for _ in range(3):
            await make_due(session)
            outcomes.append(
                await run_enrollment_step(job_context, enrollment_uuid(enrollment))
            )

        assert outcomes == ["sent", "sent", "completed"]
        assert [message["Subject"] for message in smtp_server.messages] == ["Hi"]
        finished = await fetch(client, auth, enrollment)
        assert finished["status"] == "completed"
        assert [run["status"] for run in finished["step_runs"]] == [
            "completed",
            "completed",
            "sent",
        ]
