"""The platform's own AWS principal from the app's managed identity (EXPORT_AWS_WEB_IDENTITY=managed-identity).

The managed identity's token comes from the loopback Entra stand-in (exporter/local/entra.py); AWS STS
is a stand-in of this file on loopback, because moto with IAM enforced refuses the unsigned
AssumeRoleWithWebIdentity that AWS itself accepts. It checks the web identity token as AWS's OIDC
provider would (issuer, audience, subject), and for AssumeRole which key signed the request, so the
test sees the whole chain: managed identity token → platform role session → the customer's role.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import pytest

from exporter.destinations import aws_platform
from exporter.destinations.keyless_s3 import assume_role
from exporter.destinations.s3_errors import RoleNotAssumed, role_refusal
from exporter.errors import ConfigurationError, CredentialError
from exporter.identity import Opening, PlatformIdentity
from exporter.local.entra import ASSERTION_AUDIENCE, EntraStandIn, self_signed
from exporter.local.loopback import JsonHandler, serve
from exporter.settings import Settings
from tests.keyless_helpers import trust_certificate

PLATFORM_ROLE = "arn:aws:iam::111122223333:role/event-export"
CUSTOMER_ROLE = "arn:aws:iam::444455556666:role/customer-export"
EXTERNAL_ID = "the-accounts-external-id"


def _payload(token: str) -> dict:
    import base64
    import json

    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


@dataclasses.dataclass
class StsStandIn:
    """AssumeRoleWithWebIdentity and AssumeRole, as AWS answers them, recording each ask."""

    subject: str = "platform-managed-identity"  # the managed identity the platform role trusts
    session_seconds: int = 3600  # how long the platform's sessions last
    exchanges: list[dict] = dataclasses.field(default_factory=list)
    assumed: list[dict] = dataclasses.field(default_factory=list)
    issued_keys: set[str] = dataclasses.field(default_factory=set)

    def start(self) -> StsStandIn:
        sts = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                form = {
                    k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()
                }
                if form.get("Action") == "AssumeRoleWithWebIdentity":
                    return self._answer(*sts.exchange(form))
                if form.get("Action") == "AssumeRole":
                    return self._answer(*sts.assume(form, self.headers.get("Authorization", "")))
                self._answer(400, sts.error("InvalidAction", "unknown action"))

            def _answer(self, status: int, xml: str) -> None:
                data = xml.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = serve(Handler, "sts-stand-in")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()

    def exchange(self, form: dict) -> tuple[int, str]:
        self.exchanges.append(form)
        claims = _payload(form.get("WebIdentityToken", ""))
        trusted = (
            claims.get("aud") == ASSERTION_AUDIENCE
            and str(claims.get("iss", "")).startswith("https://sts.windows.net/")
            and claims.get("sub") == self.subject
            and form.get("RoleArn") == PLATFORM_ROLE
        )
        if not trusted:
            return 400, self.error("InvalidIdentityToken", "the token is not trusted")
        return 200, self.credentials("AssumeRoleWithWebIdentity", self.session_seconds, remember=True)

    def assume(self, form: dict, authorization: str) -> tuple[int, str]:
        key = authorization.split("Credential=")[1].split("/")[0] if "Credential=" in authorization else ""
        self.assumed.append({**form, "signed_by": key})
        if key not in self.issued_keys or form.get("ExternalId") != EXTERNAL_ID:
            return 403, self.error("AccessDenied", "not authorized to perform sts:AssumeRole")
        return 200, self.credentials("AssumeRole", 3600)

    def credentials(self, action: str, seconds: int, remember: bool = False) -> str:
        key = "ASIA" + uuid.uuid4().hex[:16].upper()
        if remember:
            self.issued_keys.add(key)
        expires = (datetime.now(timezone.utc) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f'<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><{action}Result>'
            f"<Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>{uuid.uuid4().hex}</SecretAccessKey>"
            f"<SessionToken>{uuid.uuid4().hex}</SessionToken><Expiration>{expires}</Expiration></Credentials>"
            f"<AssumedRoleUser><Arn>arn:aws:sts::1:assumed-role/r/s</Arn><AssumedRoleId>A:s</AssumedRoleId></AssumedRoleUser>"
            f"</{action}Result><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{action}Response>"
        )

    @staticmethod
    def error(code: str, message: str) -> str:
        return (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{escape(message)}</Message>"
            f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        )


@pytest.fixture(scope="module")
def entra(tmp_path_factory):
    cert, key = self_signed(tmp_path_factory.mktemp("entra"))
    stand_in = EntraStandIn("not-used-here").start(cert, key)
    yield stand_in, cert
    stand_in.stop()


@pytest.fixture
def sts():
    stand_in = StsStandIn().start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def platform(entra, sts, monkeypatch) -> PlatformIdentity:
    stand_in, cert = entra
    trust_certificate(monkeypatch, cert)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{stand_in.url}/msi/token")  # the app's managed identity
    monkeypatch.setenv("IDENTITY_HEADER", stand_in.identity_header)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)  # no key anywhere: the managed identity is the only way in
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(aws_platform, "_federated", {})
    return PlatformIdentity(
        aws_principal_arn=PLATFORM_ROLE, aws_sts_endpoint=sts.url, aws_web_identity="managed-identity"
    )


def opening(platform: PlatformIdentity, session: str = "feed-1") -> Opening:
    return Opening(account="acme", session=session, find_external_id=lambda: EXTERNAL_ID, platform=platform)


def test_the_managed_identity_becomes_the_platform_role_which_assumes_the_customers_role(platform, sts, entra):
    first = assume_role(opening(platform), CUSTOMER_ROLE, "eu-west-1")
    second = assume_role(opening(platform, "feed-2"), CUSTOMER_ROLE, "eu-west-1")

    assert first.access_key_id != second.access_key_id, "each AssumeRole is a session of its own"
    assert len(sts.exchanges) == 1, "the platform's session is kept (botocore refreshes it before it expires)"
    exchange = sts.exchanges[0]
    assert exchange["RoleArn"] == PLATFORM_ROLE and exchange["RoleSessionName"] == aws_platform.PLATFORM_SESSION_NAME
    assert exchange["WebIdentityToken"] in entra[0].assertions, "the managed identity's own token"
    assert [a["signed_by"] in sts.issued_keys for a in sts.assumed] == [True, True], "signed as the platform role"
    assert [a["ExternalId"] for a in sts.assumed] == [EXTERNAL_ID, EXTERNAL_ID]
    assert [a["RoleSessionName"] for a in sts.assumed] == ["event-export-feed-1", "event-export-feed-2"]


def test_a_platform_session_near_its_end_is_exchanged_again(platform, sts):
    sts.session_seconds = 300  # inside botocore's refresh margin: each use of it renews it
    assume_role(opening(platform), CUSTOMER_ROLE, "eu-west-1")
    exchanged = len(sts.exchanges)
    assume_role(opening(platform), CUSTOMER_ROLE, "eu-west-1")
    assert len(sts.exchanges) > exchanged, "the second AssumeRole waited for a fresh platform session"
    assert all(a["signed_by"] in sts.issued_keys for a in sts.assumed)


def test_aws_refusing_the_managed_identity_is_the_operators_configuration_not_the_customers(platform, sts):
    sts.subject = "some-other-identity"  # the platform role trusts another identity
    with pytest.raises(RoleNotAssumed) as refused:
        assume_role(opening(platform), CUSTOMER_ROLE, "eu-west-1")
    error = role_refusal(refused.value)
    assert isinstance(error, ConfigurationError) and not isinstance(error, CredentialError)
    assert error.field == "EXPORT_AWS_PRINCIPAL_ARN"
    assert "not trusted" not in error.message, "STS's own words are not passed on"
    assert sts.assumed == [], "the customer's role was never asked for"


def test_no_managed_identity_token_is_the_operators_configuration(platform, sts, monkeypatch):
    monkeypatch.setenv("IDENTITY_HEADER", "wrong")  # the endpoint refuses: no identity assigned to this app
    monkeypatch.setattr(aws_platform, "_federated", {})
    with pytest.raises(RoleNotAssumed) as refused:
        assume_role(opening(platform), CUSTOMER_ROLE, "eu-west-1")
    error = role_refusal(refused.value)
    assert isinstance(error, ConfigurationError) and error.field == "EXPORT_AWS_WEB_IDENTITY"
    assert sts.exchanges == [] and sts.assumed == []


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"EXPORT_AWS_WEB_IDENTITY": "token-file"}, "EXPORT_AWS_WEB_IDENTITY"),
        (
            {"EXPORT_AWS_WEB_IDENTITY": "managed-identity", "EXPORT_AWS_PRINCIPAL_ARN": "arn:aws:iam::1:user/x"},
            "EXPORT_AWS_PRINCIPAL_ARN",
        ),
    ],
)
def test_the_setting_is_checked_at_start(env, field):
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({"EXPORT_SECRET_KEY": "k", **env})
    assert refused.value.field == field
