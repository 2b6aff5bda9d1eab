"""The platform's own AWS principal, the one customers' role trust policies name (keyless S3).

Two ways, chosen by the operator's EXPORT_AWS_WEB_IDENTITY:

- empty: boto3's default credential chain, read afresh for each AssumeRole (environment, profile,
  a web identity token file, an instance role);
- `managed-identity`: the app's managed identity signs in to AWS itself. Its token for
  `api://AzureADTokenExchange` is exchanged by STS AssumeRoleWithWebIdentity for a session of the
  role EXPORT_AWS_PRINCIPAL_ARN (the operator trusts Entra ID as an OIDC provider: infra/README.md).
  botocore's own web-identity fetcher does the exchange and refreshes the session before it expires;
  azure-identity fetches (and caches) the token. No file, no key, nothing stored.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..identity import PlatformIdentity

if TYPE_CHECKING:
    import boto3

# The audience of the managed identity's token: the one Entra ID issues for workload identity
# federation, and the client id the operator registers with the OIDC provider in AWS.
WEB_IDENTITY_SCOPE = "api://AzureADTokenExchange/.default"
PLATFORM_SESSION_NAME = "event-export-platform"
PLATFORM_SESSION_SECONDS = 3600
STS_REGION = "us-east-1"  # the web-identity call is unsigned: the region only picks the default endpoint

_federated: dict[PlatformIdentity, boto3.session.Session] = {}
_lock = threading.Lock()


class PlatformSignInFailed(Exception):
    """The platform could not become its own AWS principal (the operator's to fix, or AWS's weather).

    `cause` is only matched by the S3 error map (s3_errors.role_refusal), never shown.
    """

    def __init__(self, cause: BaseException):
        super().__init__("the platform's AWS sign-in failed")
        self.cause = cause


def platform_session(platform: PlatformIdentity) -> boto3.session.Session:
    """A boto3 session signed as the platform's principal, its credentials already loaded.

    A failure to get them raises PlatformSignInFailed: it is never the customer's trust policy's fault.
    """
    import boto3

    if platform.aws_web_identity:
        with _lock:
            session = _federated.get(platform)
            if session is None:
                session = _federated[platform] = _federated_session(platform)
    else:
        session = boto3.session.Session()  # the default chain, read afresh
    try:
        credentials = session.get_credentials()
        if credentials is not None:
            credentials.get_frozen_credentials()  # the web identity exchange happens (or is refreshed) here
    except Exception as exc:  # noqa: BLE001 - worded by s3_errors.role_refusal; unknown ones pass on as bugs there
        raise PlatformSignInFailed(exc) from None
    return session


def _federated_session(platform: PlatformIdentity) -> boto3.session.Session:
    import boto3
    import botocore.session
    from azure.identity import ManagedIdentityCredential
    from botocore.credentials import (
        AssumeRoleWithWebIdentityCredentialFetcher,
        CredentialProvider,
        CredentialResolver,
        DeferredRefreshableCredentials,
    )

    identity = ManagedIdentityCredential(client_id=platform.managed_identity_client_id or None)
    core = botocore.session.Session()

    def sts_client(service_name: str, **options: object) -> object:
        return core.create_client(
            service_name, region_name=STS_REGION, endpoint_url=platform.aws_sts_endpoint or None, **options
        )

    fetcher = AssumeRoleWithWebIdentityCredentialFetcher(
        client_creator=sts_client,
        web_identity_token_loader=lambda: identity.get_token(WEB_IDENTITY_SCOPE).token,
        role_arn=platform.aws_principal_arn,
        extra_args={"RoleSessionName": PLATFORM_SESSION_NAME, "DurationSeconds": PLATFORM_SESSION_SECONDS},
    )

    class ManagedIdentityProvider(CredentialProvider):
        METHOD = "assume-role-with-web-identity"
        CANONICAL_NAME = "event-export-managed-identity"

        def load(self) -> DeferredRefreshableCredentials:
            return DeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials, method=self.METHOD)

    core.register_component("credential_provider", CredentialResolver([ManagedIdentityProvider()]))
    return boto3.session.Session(botocore_session=core)
