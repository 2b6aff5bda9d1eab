"""An integration's notification settings: where to POST (`url`), which events, and its signing secret.

The url is checked by `check_notify_url` before it is stored and again before each
send; the secret (`whsec_` + base64, as Standard Webhooks write it) is shown once, in the answer that
set the url or rotated it, and stored sealed like a destination's secret.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import egress
from ..errors import InputError
from ..validation import check_fields

if TYPE_CHECKING:
    from ..ucd.values import Json

EVENTS = ("stopped", "recovered", "delivered")
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MAX_URL = 2048
ALLOW_PRIVATE = egress.SETTING


@dataclass(frozen=True)
class NotifyConfig:
    """As stored: the url, the events, the sealed secret (never shown)."""

    url: str
    events: tuple[str, ...]
    sealed_secret: str = ""

    def to_json(self) -> dict[str, Json]:
        return {"url": self.url, "events": [*self.events]}


@dataclass(frozen=True)
class NotifyRequest:
    """A validated `notify` body field: None in IntegrationChanges.notify means not given; `url` None means remove."""

    url: str | None
    events: tuple[str, ...] = EVENTS


def parse_notify(value: object) -> NotifyRequest:
    """`null` removes the notifications; an object sets them (`url` required, `events` all three if absent)."""
    if value is None:
        return NotifyRequest(None)
    value = check_fields(value, {"url", "events"}, "notify", "null or a JSON object with 'url' and 'events'")
    if "url" not in value:
        raise InputError("is required", field="notify.url")
    url = check_notify_url(value["url"], "notify.url")
    events = value.get("events", list(EVENTS))
    if not isinstance(events, list) or not events or any(e not in EVENTS for e in events):
        raise InputError(f"must be a non-empty list of {', '.join(map(repr, EVENTS))}", field="notify.events")
    return NotifyRequest(url, tuple(e for e in EVENTS if e in events))


def private_endpoints_allowed() -> bool:
    return egress.current().allow_private


def check_notify_url(url: object, field: str) -> str:
    """The egress policy (exporter/egress.py) for a notification url: `https` and a host whose every address
    is public; `http` and private or loopback addresses only where EXPORT_ALLOW_PRIVATE_ENDPOINTS is true."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise InputError(f"must be an https URL of at most {MAX_URL} characters", field=field)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InputError("is not a valid URL", field=field) from None
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
        raise InputError("must be an https URL naming a host, with no user name or password", field=field)
    egress.current().check_url(url, field)
    return url


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key: the secret's base64 part, decoded (Standard Webhooks)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def notify_after(
    current: NotifyConfig | None, request: NotifyRequest | None, seal: Callable[[str], str]
) -> tuple[NotifyConfig | None, str | None]:
    """The notification settings a change leaves, and the new secret to show once (a new url gets one)."""
    if request is None:
        return current, None
    if request.url is None:
        return None, None
    if current is not None and current.url == request.url:
        return NotifyConfig(current.url, request.events, current.sealed_secret), None
    secret = new_secret()
    return NotifyConfig(request.url, request.events, seal(secret)), secret


def with_secret(answer: dict[str, Any], secret: str | None) -> dict[str, Any]:
    """The answer that set a notification url (or rotated its secret) shows the secret: once, never again."""
    if secret is not None:
        answer["notify"] = {**answer["notify"], "secret": secret}
    return answer
