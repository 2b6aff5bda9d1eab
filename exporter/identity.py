"""The platform's identity: what a customer grants access to instead of handing over a key.

Keyless destinations (S3 by role, and later Entra ID and Google identities) need no customer secret:
the customer trusts the platform's own identity, named by the operator's settings, and for AWS an
external id that is the account's own (the confused-deputy guard: another account of the platform
cannot name this customer's role and be let in). The external id is generated once per account,
on first ask, and stored in the identities table; two first asks at once agree (insert-if-absent).

A destination is opened on behalf of an account and a session (an integration, or a verification):
`opening_for` says so for the code that opens it, so keyless credentials know which external id to
present and what to call the session, without widening every destination factory's signature.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient

from .errors import ConfigurationError, InternalError
from .settings import Settings
from .validation import check_account

EXTERNAL_ID_ROW = "aws-external-id"
EXTERNAL_ID_BYTES = 24  # 32 URL-safe characters: unguessable, and well within STS's 2-1224 characters


@dataclass(frozen=True)
class PlatformIdentity:
    """The platform's own identities in each cloud, as the operator configured them (README's settings)."""

    aws_principal_arn: str = ""  # EXPORT_AWS_PRINCIPAL_ARN: the role or user boto3's default chain signs in as
    aws_sts_endpoint: str = ""  # EXPORT_AWS_STS_ENDPOINT: empty is AWS's regional default
    gcp_service_account: str = ""  # EXPORT_GCP_SERVICE_ACCOUNT
    gcp_iam_endpoint: str = ""  # EXPORT_GCP_IAM_ENDPOINT: generateAccessToken URL template; empty is Google's
    azure_tenant_id: str = ""  # EXPORT_AZURE_TENANT_ID: the tenant the multi-tenant application lives in
    azure_client_id: str = ""  # EXPORT_AZURE_CLIENT_ID: that application's (client) id
    azure_authority_host: str = ""  # EXPORT_AZURE_AUTHORITY_HOST: empty is Entra ID's public cloud
    managed_identity_client_id: str = ""  # AzureWebJobsStorage__clientId: the app's identity, the assertion's source

    @classmethod
    def from_settings(cls, settings: Settings) -> PlatformIdentity:
        return cls(
            aws_principal_arn=settings.aws_principal_arn,
            aws_sts_endpoint=settings.aws_sts_endpoint,
            gcp_service_account=settings.gcp_service_account,
            gcp_iam_endpoint=settings.gcp_iam_endpoint,
            azure_tenant_id=settings.azure_tenant_id,
            azure_client_id=settings.azure_client_id,
            azure_authority_host=settings.azure_authority_host,
            managed_identity_client_id=settings.storage_client_id,
        )


class ExternalIds:
    """Each account's AWS external id, in Table Storage: PartitionKey the account, one row."""

    def __init__(self, table: TableClient):
        self.table = table

    def of(self, account: str) -> str:
        """The account's external id, created on the first ask; every later ask (and a racing first one) agrees."""
        account = check_account(account)
        try:
            return str(self.table.get_entity(account, EXTERNAL_ID_ROW)["external_id"])
        except ResourceNotFoundError:
            pass
        try:
            self.table.create_entity(
                {
                    "PartitionKey": account,
                    "RowKey": EXTERNAL_ID_ROW,
                    "external_id": secrets.token_urlsafe(EXTERNAL_ID_BYTES),
                }
            )
        except ResourceExistsError:
            pass  # another first ask won: its id is the account's
        return str(self.table.get_entity(account, EXTERNAL_ID_ROW)["external_id"])


def identity_json(platform: PlatformIdentity, external_id: str) -> dict[str, Any]:
    """What `integrations identity` answers: the identities to grant, per cloud."""
    return {
        "aws": {"principal_arn": platform.aws_principal_arn or None, "external_id": external_id},
        "gcp": {"service_account": platform.gcp_service_account or None},
        "azure": {"tenant_id": platform.azure_tenant_id or None, "client_id": platform.azure_client_id or None},
    }


# ------------------------------------------------------------------ on whose behalf a destination is opened


@dataclass(frozen=True)
class Opening:
    """Who a destination client is opened for: the account, the session (integration id or `verify`), the identities."""

    account: str
    session: str
    find_external_id: Callable[[], str]  # read only when a keyless destination needs it
    platform: PlatformIdentity

    @property
    def external_id(self) -> str:
        return self.find_external_id()


_opening: ContextVar[Opening | None] = ContextVar("opening", default=None)


@contextmanager
def opening_for(opening: Opening) -> Iterator[Opening]:
    """Destinations opened inside are opened for `opening` (keyless credentials read it when the client is built)."""
    token = _opening.set(opening)
    try:
        yield opening
    finally:
        _opening.reset(token)


def current_opening(what: str) -> Opening:
    """The opening in progress; a keyless destination opened outside one is a bug of ours."""
    opening = _opening.get()
    if opening is None:
        raise InternalError(f"{what} was opened outside an account's opening (exporter.identity.opening_for)")
    return opening


def require(value: str, setting: str, what: str) -> str:
    """A platform identity setting a keyless destination needs: unset is the operator's to fix."""
    if not value:
        raise ConfigurationError(f"is not set: {what} need it (README, settings)", field=setting)
    return value
