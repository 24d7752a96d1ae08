"""Runtime settings, read from the environment with the prefix ``SALESCYCLE_``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The maximum webhook_max_attempts: attempts a delivery gets before it fails, not
# counting manual retries. A delivery shows up to this many of its last attempts.
MAX_WEBHOOK_ATTEMPTS = 50


class Settings(BaseSettings):
    """Configuration of the api and worker processes."""

    model_config = SettingsConfigDict(
        env_prefix="SALESCYCLE_", env_file=".env", extra="ignore"
    )

    env: Literal["dev", "test", "production"] = "production"
    database_url: str = Field(
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/salescycle",
        description="SQLAlchemy URL of the PostgreSQL database (asyncpg driver).",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_max_overflow: int = Field(default=10, ge=0, le=200)
    database_autocommit_pool_size: int = Field(
        default=10,
        ge=1,
        le=200,
        description="Connections of a second, plain asyncpg pool for single "
        "statements that commit on their own (the provider webhook inbox). It opens "
        "them on first use, in addition to database_pool_size.",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="URL of the Redis server that carries the arq queue.",
    )
    data_dir: Path = Field(
        default=Path(".salescycle"),
        description="Folder of the embedded servers and of .eml files in dev.",
    )
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest accepted request body, bytes."
    )
    idempotency_ttl_seconds: int = Field(default=86_400, ge=86_400)
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a verified API key is trusted without a database read.",
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Base URL of the API as clients reach it, used in unsubscribe links.",
    )
    signing_secret: SecretStr = Field(
        default=SecretStr("change-me-in-production"),
        description="Key that signs unsubscribe links.",
    )

    default_phone_region: str | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        pattern="^[A-Z]{2}$",
        description="ISO 3166-1 alpha-2 region, such as DE, of lead phone numbers "
        "written without a country code; unset means such numbers are rejected.",
    )

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_tls: Literal["starttls", "implicit", "none"] | None = Field(
        default=None,
        description="How the SMTP connection is encrypted: starttls upgrades a plain "
        "connection (port 587), implicit starts with TLS (SMTPS, port 465), none sends "
        "in clear. Unset: starttls when smtp_starttls is true, else none.",
    )
    smtp_validate_certs: bool = Field(
        default=True,
        description="Check the SMTP server's certificate and host name; turn off only "
        "for a test server.",
    )
    smtp_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA certificates that the SMTP server's "
        "certificate is checked against, instead of the system ones.",
    )
    smtp_client_cert: Path | None = Field(
        default=None, description="PEM client certificate for the SMTP server."
    )
    smtp_client_key: Path | None = Field(
        default=None,
        description="PEM private key of smtp_client_cert, when the cert file lacks it.",
    )
    smtp_timeout_seconds: float = 10.0
    mail_from: str = "salescycle <no-reply@localhost>"

    stripe_webhook_secret: SecretStr | None = None
    stripe_tolerance_seconds: int = Field(default=300, ge=1)
    stripe_api_key: SecretStr | None = Field(
        default=None,
        description="Stripe secret key (sk_…) for payment links and reconciliation; "
        "unset turns both off.",
    )
    stripe_api_base: str = Field(
        default="https://api.stripe.com",
        description="Base URL of Stripe's API; tests point it at a local stand-in.",
    )
    stripe_timeout_seconds: float = Field(
        default=20.0, gt=0, description="Timeout of one request to Stripe's API."
    )
    stripe_checkout_success_url: str = Field(
        default="http://127.0.0.1:8000/paid",
        description="Where Stripe Checkout sends the customer after paying, unless "
        "the payment link request names another URL.",
    )
    stripe_checkout_cancel_url: str = Field(
        default="http://127.0.0.1:8000/cancelled",
        description="Where Stripe Checkout sends the customer who cancels.",
    )
    reconciliation_max_payments: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Newest provider payments one reconciliation run compares.",
    )

    webhook_timeout_seconds: float = Field(default=15.0, gt=0)
    webhook_allow_private_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts or networks that webhook URLs may reach despite being private.",
    )
    webhook_max_attempts: int = Field(default=12, ge=1, le=MAX_WEBHOOK_ATTEMPTS)
    webhook_allow_http: bool = Field(
        default=False,
        description="Accept plain http:// webhook URLs; https:// is required otherwise.",
    )
    webhook_disable_after_failing_seconds: int = Field(
        default=5 * 86_400,
        ge=60,
        description="Seconds an endpoint may fail every attempt before it is disabled.",
    )
    webhook_max_in_flight_per_endpoint: int = Field(
        default=10,
        ge=1,
        description="Requests the workers send to one endpoint at once, so a slow "
        "receiver occupies at most this many worker slots.",
    )
    webhook_max_endpoints_per_workspace: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Webhook endpoints, enabled or not, that one workspace may have. "
        "Every event goes to each endpoint that subscribes to it.",
    )
    webhook_batch_size: int = Field(
        default=500,
        ge=1,
        description="Webhook deliveries one worker process keeps leased and not yet "
        "ended, across endpoints. Its delivery loop leases more once half of them "
        "ended.",
    )
    webhook_poll_interval_seconds: float = Field(
        default=0.05,
        gt=0,
        description="Seconds an idle delivery loop waits before it looks for new "
        "events and due deliveries again.",
    )
    custom_field_max_definitions_per_object_type: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Custom field definitions one workspace may have for each object "
        "type.",
    )
    event_retention_days: int = Field(
        default=30,
        ge=1,
        description="Days events, with their deliveries and attempts, are kept before "
        "the worker prunes them. The newest event of each object is always kept.",
    )

    worker_poll_delay_seconds: float = Field(default=0.05, gt=0)
    worker_max_jobs: int = Field(default=50, ge=1)
    worker_job_timeout_seconds: int = Field(default=60, ge=1)
    sweep_interval_seconds: int = Field(
        default=5,
        description="Seconds between sweeps for due work whose job was lost; a divisor "
        "of 60.",
    )
    claim_lease_seconds: int = Field(default=120, ge=10)
    step_lease_seconds: int = Field(
        default=45,
        ge=10,
        description="Seconds a worker holds a nurture step it runs. A step whose "
        "worker died is retried by the next sweep after this, so within a minute by "
        "default; it must cover one SMTP send or webhook call.",
    )

    capture_rate_limit_per_minute: int = Field(
        default=30,
        ge=1,
        description="Capture submissions one client address (one /64 network for "
        "IPv6) may make a minute.",
    )
    capture_form_rate_limit_per_minute: int = Field(
        default=600,
        ge=1,
        description="Capture submissions one form accepts a minute, from all clients.",
    )
    import_max_bytes: int = Field(
        default=52_428_800,
        ge=1024,
        description="Largest CSV file accepted by POST /v1/lead-imports, bytes.",
    )
    import_max_rows: int = Field(
        default=200_000, ge=1, description="Most data rows one CSV import may have."
    )
    import_chunk_rows: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description="Rows an import writes per transaction.",
    )
    import_run_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Seconds an import job runs before it defers its continuation; "
        "keep it below worker_job_timeout_seconds.",
    )

    enrollment_job_chunk_leads: int = Field(
        default=200,
        ge=1,
        le=1000,
        description="Leads an enrollment job enrolls per transaction.",
    )
    enrollment_job_run_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Seconds an enrollment job runs before it defers its "
        "continuation; keep it below worker_job_timeout_seconds.",
    )

    @field_validator("sweep_interval_seconds")
    @classmethod
    def _divides_minute(cls, value: int) -> int:
        if value < 1 or 60 % value:
            raise ValueError(
                "must divide 60: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60"
            )
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
