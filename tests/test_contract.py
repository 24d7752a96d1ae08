"""Schemathesis over every operation of the committed contract, against a live server.

The server is a real uvicorn process on its own database, so generated requests commit
like production traffic and cannot disturb the rolled-back transactions of other tests.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from tests.conftest import Servers, sibling_database_url
from tests.live import Tenant, free_port, prepare_database, running

CONTRACT = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"

schema = schemathesis.openapi.from_path(str(CONTRACT))
# A generated body can exceed max_body_bytes, and 413 is the documented response.
_rejection = schema.config.checks.negative_data_rejection
_rejection.expected_statuses = [*_rejection.expected_statuses, "413"]


@dataclass(frozen=True)
class LiveApi:
    base_url: str
    tenant: Tenant


@pytest.fixture(scope="module")
def live_api(
    servers: Servers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    database_url = sibling_database_url(servers.database_url, "contract")
    tenant = prepare_database(database_url)
    # Configured headers, unlike headers passed per call, are known to schemathesis, so
    # a case that drops or spoils Authorization is judged as the request really sent.
    schema.config.update(headers=tenant.headers)
    port = free_port()
    env = {
        "SALESCYCLE_DATABASE_URL": database_url,
        "SALESCYCLE_REDIS_URL": servers.redis_url,
        "SALESCYCLE_LOG_LEVEL": "WARNING",
        "SALESCYCLE_ENV": "test",
        "SALESCYCLE_STRIPE_WEBHOOK_SECRET": "whsec_contract",
    }
    log_path = tmp_path_factory.mktemp("contract") / "api.log"
    with running(
        ["uvicorn", "app.main:create_app", "--factory", "--port", str(port)],
        env,
        ready_url=f"http://127.0.0.1:{port}/healthz",
        log_path=log_path,
    ):
        yield LiveApi(base_url=f"http://127.0.0.1:{port}", tenant=tenant)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_operation_conforms(
    case: schemathesis.Case,  # type: ignore[type-arg]
    live_api: LiveApi,
) -> None:
    # Every check runs except positive_data_acceptance: a schema cannot express every
    # semantic rule (a real IANA zone, an address email-validator accepts, a business
    # rule across fields), and those requests rightly get a documented 422.
    _keep_name_lookups_local(case)
    _drop_framing_headers(case)
    case.call_and_validate(
        base_url=live_api.base_url,
        excluded_checks=[positive_data_acceptance],
    )


# Headers that frame the HTTP message itself. A generated value such as
# "transfer-encoding: j>f" is rejected by uvicorn before the request reaches the app,
# with uvicorn's own plain-text 400, which no API contract documents.
_FRAMING_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def _drop_framing_headers(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
    if not case.headers:
        return
    for name in [name for name in case.headers if name.lower() in _FRAMING_HEADERS]:
        del case.headers[name]


def _keep_name_lookups_local(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
    # Creating a webhook endpoint resolves its host name, and generated or example URLs
    # name real hosts. Pointing them at 127.0.0.1 keeps every DNS query on the machine.
    body = case.body
    if not case.path.startswith("/v1/webhook-endpoints") or not isinstance(body, dict):
        return
    url = body.get("url")
    if not isinstance(url, str):
        return
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return
    if parts.scheme.lower() not in ("http", "https") or not host:
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        port = f":{parts.port}" if parts.port else ""
        body["url"] = urlunsplit(parts._replace(netloc=f"127.0.0.1{port}"))
