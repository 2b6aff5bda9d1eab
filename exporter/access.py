"""Who is asking, and may they: the signed-in user from App Service Authentication, checked against members.

In Azure, App Service Authentication (Microsoft Entra ID, configured by infra/) signs users in and
passes the user to the app in the `X-MS-CLIENT-PRINCIPAL` headers, which it strips from incoming
requests, so only the platform can set them. They are believed only where the platform says
authentication is on (`WEBSITE_AUTH_ENABLED`). A request without them is service-to-service (a
function key) and keeps working as before.

A user who is not a member of an account gets exactly the answer an account that does not exist
gets: nothing tells them it exists.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .errors import NotFoundError
from .members import MemberRepo, check_user

if TYPE_CHECKING:  # a JSON value's type only: the ucd package is not loaded for it
    from .ucd.values import Json

PRINCIPAL = "X-MS-CLIENT-PRINCIPAL"
PRINCIPAL_NAME = "X-MS-CLIENT-PRINCIPAL-NAME"
NAME_CLAIMS = ("preferred_username", "upn", "email", "name")
MEMBER_OPERATIONS = frozenset({"members_list", "members_add", "members_remove", "members_history"})


def app_service_auth_enabled(env: Mapping[str, str] | None = None) -> bool:
    """App Service sets WEBSITE_AUTH_ENABLED=True when its authentication runs in front of the app."""
    return (os.environ if env is None else env).get("WEBSITE_AUTH_ENABLED", "").lower() == "true"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def principal_user(headers: Mapping[str, str]) -> str | None:
    """The signed-in user's name from the principal headers, lowercase; None when there is none or it is unreadable."""
    encoded = _header(headers, PRINCIPAL)
    name = _header(headers, PRINCIPAL_NAME)
    if encoded:
        name = _name_claim(encoded) or name
    if not name:
        return None
    try:
        return check_user(name)
    except Exception:  # noqa: BLE001 - a name we cannot use is no user
        return None


def _name_claim(encoded: str) -> str | None:
    """The name claim of the base64 JSON principal ({"auth_typ", "name_typ", "claims": [{"typ", "val"}]})."""
    try:
        principal = json.loads(base64.b64decode(encoded, validate=False))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(principal, dict) or not isinstance(principal.get("claims"), list):
        return None
    claims = {
        c.get("typ"): c.get("val") for c in principal["claims"] if isinstance(c, dict) and isinstance(c.get("val"), str)
    }
    for typ in (principal.get("name_typ"), *NAME_CLAIMS):
        if isinstance(typ, str) and claims.get(typ):
            return claims[typ]
    return None


def account_not_found(account: str) -> NotFoundError:
    """The one answer for an account a user may not see, and for one that does not exist."""
    return NotFoundError(f"account {account!r} not found", field="account")


def api_refusal(
    members: MemberRepo, operation: str, params: Mapping[str, str], headers: Mapping[str, str], auth_enabled: bool
) -> tuple[int, dict[str, Json]] | None:
    """The answer to an API request made on behalf of a signed-in user who may not make it; None lets it through.

    Without a signed-in user the request is service-to-service (the host checked its function key).
    Members are managed by operators only, never by a signed-in user.
    """
    if not auth_enabled:
        return None
    user = principal_user(headers)
    if user is None and _header(headers, PRINCIPAL) is None and _header(headers, PRINCIPAL_NAME) is None:
        return None
    if user is None:
        return _forbidden("the signed-in user's name could not be read from the sign-in headers")
    if operation in MEMBER_OPERATIONS:
        return _forbidden("members are managed by operators (function key or CLI)")
    account = params.get("account", "")
    if not members.is_member(account, user):
        return 404, account_not_found(account).to_json()
    return None


def _forbidden(message: str) -> tuple[int, dict[str, Json]]:
    return 403, {"error": {"code": "forbidden", "message": message, "field": "user"}}
