"""Loopback Microsoft Entra ID for keyless Azure destinations (tests and the demo, never deployed).

- `self_signed(dir)`: a certificate for 127.0.0.1 made at start (cryptography), for Azurite's https
  (OAuth needs it) and the token endpoint (MSAL accepts only https authorities).
- `start_azurite_oauth(cert)`: Azurite with `--oauth basic` over https. Its basic OAuth (read in
  node_modules/azurite/dist/src/blob/authentication/BlobTokenAuthenticator.js) decodes the bearer
  token WITHOUT checking its signature, checks its lifetime (nbf, exp, iat), its issuer against a
  prefix list (https://sts.windows.net/ ...: any tenant passes) and its audience
  (https://storage.azure.com or the account's URL), and nothing about tenant or roles.
- `EntraStandIn`: the managed identity endpoint (App Service style: IDENTITY_ENDPOINT and
  IDENTITY_HEADER, a token for api://AzureADTokenExchange) and, per tenant, the OpenID metadata and
  token endpoint where ClientAssertionCredential exchanges that token. It refuses an unknown
  client, an assertion it did not issue, and a tenant that has not consented (AADSTS700016), and
  issues tokens for `audience` (default https://storage.azure.com).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from .cloudservers import _spawn, _stop, _wait_listening
from .devstorage import DEV_ACCOUNT, ROOT, free_port
from .loopback import JsonHandler, StandIn, serve

ASSERTION_AUDIENCE = "api://AzureADTokenExchange"
STORAGE_AUDIENCE = "https://storage.azure.com"
# The issuer of the app's managed identity tokens (Entra ID v1 tokens name the platform's own tenant).
PLATFORM_ISSUER = "https://sts.windows.net/72f988bf-0000-4000-8000-00000000cafe/"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """cert.pem and key.pem for 127.0.0.1 and localhost, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class OAuthAzurite:
    blob_url: str  # https://127.0.0.1:PORT/devstoreaccount1
    process: subprocess.Popen

    def stop(self) -> None:
        _stop(self.process)


def start_azurite_oauth(cert: Path, key: Path, timeout: float = 30) -> OAuthAzurite:
    """Azurite's blob service with `--oauth basic` over https on a free port (in memory)."""
    port = free_port()
    binary = ROOT / "node_modules" / ".bin" / "azurite-blob"
    args = [str(binary), "--silent", "--inMemoryPersistence", "--skipApiVersionCheck", "--disableTelemetry"]
    args += ["--blobHost", "127.0.0.1", "--blobPort", str(port), "--oauth", "basic"]
    args += ["--cert", str(cert), "--key", str(key)]
    process, log = _spawn(args, os.environ.copy())
    _wait_listening(process, log, port, "azurite (oauth)", timeout)
    return OAuthAzurite(f"https://127.0.0.1:{port}/{DEV_ACCOUNT}", process)


@dataclass
class EntraStandIn(StandIn):
    """Managed identity and Entra token endpoints on https://127.0.0.1 (see the module's docstring)."""

    client_id: str  # the platform's application
    consented: set[str] = field(default_factory=set)  # tenants where the application is consented
    audience: str = STORAGE_AUDIENCE  # what the storage tokens are for
    identity_header: str = field(default_factory=lambda: os.urandom(8).hex())
    assertions: list[str] = field(default_factory=list)  # managed identity tokens handed out
    issued: list[tuple[str, str]] = field(default_factory=list)  # (tenant, storage token)

    def start(self, cert: Path, key: Path) -> EntraStandIn:
        entra = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/msi/token":
                    return self._managed_identity(parse_qs(url.query))
                parts = url.path.strip("/").split("/")
                if len(parts) >= 2 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                    return self._json(200, entra.metadata(parts[0]))
                self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                form = self._form()
                parts = urlsplit(self.path).path.strip("/").split("/")
                if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
                    return self._token(parts[0], form)
                self._json(404, {"error": "not_found"})

            def _managed_identity(self, query: dict[str, list[str]]) -> None:
                if self.headers.get("X-IDENTITY-HEADER") != entra.identity_header:
                    return self._json(401, {"error": "unauthorized"})
                if query.get("resource") != [ASSERTION_AUDIENCE]:
                    return self._json(400, {"error": "invalid_resource"})
                token = entra.jwt(
                    {"aud": ASSERTION_AUDIENCE, "iss": PLATFORM_ISSUER, "sub": "platform-managed-identity"}
                )
                entra.assertions.append(token)
                expires = int(time.time()) + 3600
                self._json(
                    200,
                    {
                        "access_token": token,
                        "expires_on": str(expires),
                        "resource": ASSERTION_AUDIENCE,
                        "token_type": "Bearer",
                    },
                )

            def _token(self, tenant: str, form: dict[str, list[str]]) -> None:
                one = {k: v[0] for k, v in form.items()}
                if one.get("client_id") != entra.client_id or tenant not in entra.consented:
                    return self._json(
                        400,
                        {
                            "error": "unauthorized_client",
                            "error_description": f"AADSTS700016: Application with identifier '{one.get('client_id')}' "
                            f"was not found in the directory '{tenant}'.",
                        },
                    )
                if one.get("client_assertion") not in entra.assertions:
                    return self._json(
                        401, {"error": "invalid_client", "error_description": "AADSTS700024: bad assertion"}
                    )
                token = entra.jwt(
                    {
                        "aud": entra.audience,
                        "iss": f"https://sts.windows.net/{tenant}/",
                        "tid": tenant,
                        "appid": entra.client_id,
                    }
                )
                entra.issued.append((tenant, token))
                self._json(
                    200, {"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600, "access_token": token}
                )

        self._server = serve(Handler, "entra-stand-in", (cert, key))
        return self

    def metadata(self, tenant: str) -> dict[str, str]:
        return {
            "issuer": f"{self.url}/{tenant}/v2.0",
            "token_endpoint": f"{self.url}/{tenant}/oauth2/v2.0/token",
            "authorization_endpoint": f"{self.url}/{tenant}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{self.url}/{tenant}/oauth2/v2.0/devicecode",
        }

    def jwt(self, claims: dict[str, str]) -> str:
        """A token with real-time lifetime claims (Azurite checks them against its clock), signed with a throwaway key."""
        import jwt

        now = int(time.time())
        return jwt.encode({**claims, "iat": now, "nbf": now - 60, "exp": now + 3600}, os.urandom(32).hex(), "HS256")
