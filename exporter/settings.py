"""Settings from the environment (the Functions host's app settings)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigurationError

DEFAULT_CONNECTION = "UseDevelopmentStorage=true"


def allow_private_endpoints(env: Mapping[str, str]) -> bool:
    """EXPORT_ALLOW_PRIVATE_ENDPOINTS: "true" or "false" (the default); anything else is refused."""
    raw = env.get("EXPORT_ALLOW_PRIVATE_ENDPOINTS", "").strip().lower()
    if raw not in ("", "true", "false"):
        raise ConfigurationError(f"must be true or false, got {raw!r}", field="EXPORT_ALLOW_PRIVATE_ENDPOINTS")
    return raw == "true"


@dataclass(frozen=True)
class Settings:
    """Every knob the app reads; `local.settings.sample.json` lists each one."""

    storage_connection: str = DEFAULT_CONNECTION
    # Identity-based AzureWebJobsStorage (as deployed by infra/): service URIs plus a managed identity.
    storage_blob_uri: str = ""
    storage_queue_uri: str = ""
    storage_table_uri: str = ""
    storage_client_id: str = ""
    settle_seconds: int = 120
    queue_name: str = "export-jobs"
    table_prefix: str = ""
    ucd_container: str = "ucd"
    secret_key: str = ""
    max_windows_per_run: int = 12
    max_seconds_per_run: int = 240
    lease_seconds: int = 600
    ucd_commit_timeout_seconds: int = 20
    max_dequeue_count: int = 5
    split_bytes: int = 1 << 30  # a window whose segments hold more is exported in parts of about this size
    # The platform's identities for keyless destinations (exporter/identity.py; README, settings).
    aws_principal_arn: str = ""
    aws_sts_endpoint: str = ""
    aws_web_identity: str = ""  # empty: boto3's default chain; managed-identity (destinations/aws_platform.py)
    gcp_service_account: str = ""
    gcp_iam_endpoint: str = ""  # empty: Google's IAM Credentials API (a template, `{}` the service account)
    azure_tenant_id: str = ""
    azure_client_id: str = ""
    azure_authority_host: str = ""
    # Customer endpoints may be loopback, private or plain http (local, CI, tests, the demo; never in Azure):
    # exporter/egress.py reads it from the environment when a destination is opened.
    allow_private_endpoints: bool = False

    @property
    def poison_queue_name(self) -> str:
        return f"{self.queue_name}-poison"

    @property
    def notify_queue_name(self) -> str:
        """Notifications to customers (exporter/notifications): a queue of their own, never in an export's way."""
        return f"{self.queue_name}-notify"

    @property
    def staging_container(self) -> str:
        """Where the parts of a split GCS window stage their bytes until the relay, and a Parquet file keeps its block notes."""
        return f"{self.ucd_container}-staging"

    def table(self, name: str) -> str:
        """Table names share an optional prefix so several deployments (or tests) can share an account."""
        return f"{self.table_prefix}{name}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)

        def integer(name: str, default: int, minimum: int = 0) -> int:
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigurationError(f"must be a whole number, got {raw!r}", field=name) from None
            if value < minimum:
                raise ConfigurationError(f"must be at least {minimum}", field=name)
            return value

        uris = [env.get(f"AzureWebJobsStorage__{kind}ServiceUri", "") for kind in ("blob", "queue", "table")]
        if any(uris) and not all(uris):
            raise ConfigurationError(
                "and the queue and table service URIs must be set together", field="AzureWebJobsStorage__blobServiceUri"
            )
        settings = cls(
            storage_connection=env.get("AzureWebJobsStorage") or ("" if any(uris) else DEFAULT_CONNECTION),
            storage_blob_uri=uris[0],
            storage_queue_uri=uris[1],
            storage_table_uri=uris[2],
            storage_client_id=env.get("AzureWebJobsStorage__clientId", ""),
            settle_seconds=integer("EXPORT_SETTLE_SECONDS", 120, 1),
            queue_name=env.get("EXPORT_QUEUE_NAME") or "export-jobs",
            table_prefix=env.get("EXPORT_TABLE_PREFIX", ""),
            ucd_container=env.get("UCD_CONTAINER") or "ucd",
            secret_key=env.get("EXPORT_SECRET_KEY", ""),
            max_windows_per_run=integer("EXPORT_MAX_WINDOWS_PER_RUN", 12, 1),
            max_seconds_per_run=integer("EXPORT_MAX_SECONDS_PER_RUN", 240, 1),
            lease_seconds=integer("EXPORT_LEASE_SECONDS", 600, 1),
            ucd_commit_timeout_seconds=integer("UCD_COMMIT_TIMEOUT_SECONDS", 20, 1),
            max_dequeue_count=integer("EXPORT_MAX_DEQUEUE_COUNT", 5, 1),
            split_bytes=integer("EXPORT_SPLIT_BYTES", 1 << 30, 1),
            aws_principal_arn=env.get("EXPORT_AWS_PRINCIPAL_ARN", ""),
            aws_sts_endpoint=env.get("EXPORT_AWS_STS_ENDPOINT", ""),
            aws_web_identity=env.get("EXPORT_AWS_WEB_IDENTITY", ""),
            gcp_service_account=env.get("EXPORT_GCP_SERVICE_ACCOUNT", ""),
            gcp_iam_endpoint=env.get("EXPORT_GCP_IAM_ENDPOINT", ""),
            azure_tenant_id=env.get("EXPORT_AZURE_TENANT_ID", ""),
            azure_client_id=env.get("EXPORT_AZURE_CLIENT_ID", ""),
            azure_authority_host=env.get("EXPORT_AZURE_AUTHORITY_HOST", ""),
            allow_private_endpoints=allow_private_endpoints(env),
        )
        settings.check()
        return settings

    def check(self) -> None:
        # A row stamped at t must be committed before t + settle (docs/invariants.md), so the commit
        # budget has to fit well inside the settle time.
        if self.ucd_commit_timeout_seconds * 2 > self.settle_seconds:
            raise ConfigurationError(
                "must be at most half of EXPORT_SETTLE_SECONDS, or late commits could miss their window",
                field="UCD_COMMIT_TIMEOUT_SECONDS",
            )
        if self.aws_web_identity not in ("", "managed-identity"):
            raise ConfigurationError("must be empty or managed-identity", field="EXPORT_AWS_WEB_IDENTITY")
        if self.aws_web_identity and ":role/" not in self.aws_principal_arn:
            raise ConfigurationError(
                "must be the ARN of the platform's AWS role when EXPORT_AWS_WEB_IDENTITY is managed-identity",
                field="EXPORT_AWS_PRINCIPAL_ARN",
            )
