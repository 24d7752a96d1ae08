from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.webhooks.signing import (
    SECRET_PREFIX,
    generate_secret,
    secret_key,
    sign,
    webhook_headers,
)


class TestGenerateSecret:
    def test_format(self) -> None:
        secret = generate_secret()

        assert secret.startswith(SECRET_PREFIX)
        assert len(base64.b64decode(secret.removeprefix(SECRET_PREFIX))) == 32

    def test_unique(self) -> None:
        assert generate_secret() != generate_secret()


class TestSign:
    def test_known_vector(self) -> None:
        # The example of the Standard Webhooks specification.
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        body = b'{"test": 2432232314}'

        signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)

        assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    def test_verified_by_library(self) -> None:
        secret = generate_secret()
        body = b'{"id":"evt_1","type":"lead.created"}'
        headers = webhook_headers([secret], "wd_1", int(time.time()), body)

        payload = Webhook(secret).verify(body, headers)

        assert payload == {"id": "evt_1", "type": "lead.created"}

    def test_both_secrets_verify(self) -> None:
        new, old = generate_secret(), generate_secret()
        body = b"{}"
        headers = webhook_headers([new, old], "wd_1", int(time.time()), body)

        Webhook(new).verify(body, headers)
        Webhook(old).verify(body, headers)

        assert len(headers["webhook-signature"].split(" ")) == 2

    def test_tampered_body_fails(self) -> None:
        secret = generate_secret()
        headers = webhook_headers([secret], "wd_1", int(time.time()), b'{"a":1}')

        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(b'{"a":2}', headers)

    def test_invalid_secret(self) -> None:
        with pytest.raises(ValueError):
            secret_key("whsec_not*base64")
