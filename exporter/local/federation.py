"""Loopback stand-ins for Google's federation endpoints (tests and the demo, never deployed).

Keyless GCS uses Application Default Credentials: in Azure an `external_account` configuration
(workload identity federation: the app's managed-identity token exchanged at Google's STS, then the
platform's service account impersonated), optionally impersonating a customer's service account.
google-auth runs those real flows; here they reach two small endpoints on 127.0.0.1 instead of
sts.googleapis.com and iamcredentials.googleapis.com:

- `POST /v1/token`: the OAuth 2.0 token exchange (RFC 8693). A subject token in `accepted` earns a
  federated access token; any other is refused 400 invalid_grant (as Google's STS refuses a token
  whose issuer or audience the pool does not trust).
- `POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken`: with a bearer token this endpoint
  granted, an access token for `email`, unless `email` is in `refused` (403, as when the caller lacks
  roles/iam.serviceAccountTokenCreator on it).

`config(path)` writes the external_account file that GOOGLE_APPLICATION_CREDENTIALS names.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .loopback import JsonHandler, StandIn, serve

IMPERSONATE_RE = re.compile(r"^/v1/projects/-/serviceAccounts/([^/:]+):generateAccessToken$")
AUDIENCE = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/platform/providers/azure"


@dataclass
class GoogleFederation(StandIn):
    """The STS and IAM Credentials stand-ins, and what they were asked."""

    accepted: set[str] = field(default_factory=set)  # subject tokens the STS exchanges
    refused: set[str] = field(default_factory=set)  # service accounts that may not be impersonated
    exchanged: list[str] = field(default_factory=list)  # federated tokens handed out
    impersonated: list[tuple[str, str]] = field(default_factory=list)  # (service account, access token)

    def start(self) -> GoogleFederation:
        endpoints = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                form = self._form()
                if self.path == "/v1/token":
                    return self._exchange(form)
                found = IMPERSONATE_RE.fullmatch(self.path)
                if found:
                    return self._impersonate(found[1], self.headers.get("Authorization", ""))
                self._json(404, {"error": {"code": 404, "message": "not found"}})

            def _exchange(self, form: dict[str, list[str]]) -> None:
                if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:token-exchange"]:
                    return self._json(400, {"error": "invalid_request"})
                if form.get("subject_token", [""])[0] not in endpoints.accepted:
                    return self._json(400, {"error": "invalid_grant", "error_description": "The token is not trusted."})
                token = f"federated-{os.urandom(12).hex()}"
                endpoints.exchanged.append(token)
                self._json(
                    200,
                    {
                        "access_token": token,
                        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                        "token_type": "Bearer",
                        "expires_in": 3600,
                    },
                )

            def _impersonate(self, email: str, authorization: str) -> None:
                bearer = authorization.removeprefix("Bearer ")
                known = {*endpoints.exchanged, *(token for _, token in endpoints.impersonated)}
                if bearer not in known:
                    return self._json(401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}})
                if email in endpoints.refused:
                    return self._json(403, {"error": {"code": 403, "status": "PERMISSION_DENIED"}})
                token = f"impersonated-{os.urandom(12).hex()}"
                endpoints.impersonated.append((email, token))
                expires = datetime.now(timezone.utc) + timedelta(hours=1)
                self._json(200, {"accessToken": token, "expireTime": expires.strftime("%Y-%m-%dT%H:%M:%SZ")})

        self._server = serve(Handler, "google-federation")
        return self

    @property
    def iam_endpoint(self) -> str:
        """The generateAccessToken URL template google-auth's impersonated credentials take (`{}`: the email)."""
        return f"{self.url}/v1/projects/-/serviceAccounts/{{}}:generateAccessToken"

    def config(self, path: Path, subject_token_file: Path, platform_service_account: str) -> Path:
        """The external_account file of the platform (what GOOGLE_APPLICATION_CREDENTIALS names)."""
        path.write_text(
            json.dumps(
                {
                    "type": "external_account",
                    "audience": AUDIENCE,
                    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                    "token_url": f"{self.url}/v1/token",
                    "service_account_impersonation_url": self.iam_endpoint.format(platform_service_account),
                    "credential_source": {"file": str(subject_token_file)},
                }
            )
        )
        return path
