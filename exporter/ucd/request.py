"""Validation of an upsert body, all of it before anything is stored (I8)."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ..clock import parse_instant
from ..errors import InputError
from .values import event_id, render

ACCOUNT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_USERS = 10_000
MAX_EVENTS = 50_000
MAX_NAME_LENGTH = 256
# Names become Table Storage keys (percent-encoded, at most 1 KiB), so they are bounded in UTF-8 bytes too.
MAX_NAME_BYTES = 256
# A profile's attributes and identifiers are each one Table Storage string property.
MAX_PROFILE_CHARS = 30_000
USER_FIELDS = {"user_id", "identifiers", "attributes", "events"}
EVENT_FIELDS = {"event_name", "timestamp", "event_params"}


def check_account(account: Any, field_name: str = "account") -> str:
    """Account names go into file names, where `_` separates parts, so only [a-z0-9-] are allowed."""
    if not isinstance(account, str) or not ACCOUNT_RE.match(account):
        raise InputError(field_name, "must be 2-63 characters of lowercase letters, digits and '-', starting with a letter or digit")
    return account


@dataclass(frozen=True)
class EventDraft:
    """One event of a request, normalised: the identity and every cell value are fixed here."""

    event_id: str
    user_id: str
    event_name: str
    timestamp: str  # ISO 8601 UTC with milliseconds
    params: dict[str, str | None]


@dataclass
class UserDraft:
    user_id: str
    identifiers: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[EventDraft] = field(default_factory=list)


@dataclass
class UpsertRequest:
    account: str
    users: list[UserDraft]

    @property
    def received_events(self) -> int:
        return sum(len(u.events) for u in self.users)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf: refused like Infinity
        raise ValueError(f"{text} is out of range")
    return value


def load_json_body(body: bytes | str, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """Parse a request body; non-finite numbers (NaN, Infinity) are refused."""
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > max_bytes:
        raise InputError("body", f"is {len(raw)} bytes; the limit is {max_bytes} bytes, split the request")
    if not raw.strip():
        raise InputError("body", "is empty; a JSON object is required")
    try:
        return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError("body", f"is not valid JSON ({exc})") from None


def check_name(value: Any, field_name: str) -> str:
    """A user id, event name or key: non-empty, bounded, printable, storable as a Table key."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(field_name, "must be a non-empty string")
    if len(value) > MAX_NAME_LENGTH:
        raise InputError(field_name, f"is longer than {MAX_NAME_LENGTH} characters")
    if any(ord(c) < 32 for c in value):
        raise InputError(field_name, "must not contain control characters")
    _text(value, field_name)
    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
        raise InputError(field_name, f"is longer than {MAX_NAME_BYTES} bytes in UTF-8")
    return value


def _text(value: Any, field_name: str) -> None:
    """Every string must be valid Unicode: a lone surrogate (JSON `\\ud800`) cannot be stored."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(field_name, "must be valid Unicode text (no unpaired surrogates)") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _object(value: Any, field_name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(field_name, "must be a JSON object")
    for key, item in value.items():
        check_name(key, f"{field_name} key")
        _text(item, f"{field_name}.{key}")
    return value


def _profile_part(value: dict[str, Any], field_name: str) -> dict[str, Any]:
    if len(json.dumps(value, separators=(",", ":"), ensure_ascii=False)) > MAX_PROFILE_CHARS:
        raise InputError(field_name, f"is larger than {MAX_PROFILE_CHARS} characters as JSON")
    return value


def _timestamp(value: Any, field_name: str) -> tuple[int, str]:
    try:
        when = parse_instant(value, field_name) if isinstance(value, str) else None
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise InputError(field_name, "is out of range") from None
    if when is None:
        raise InputError(field_name, "must be an ISO 8601 date-time string")
    if not (EPOCH <= when < datetime(9999, 1, 1, tzinfo=timezone.utc)):
        raise InputError(field_name, "is out of range")
    ms = (when - EPOCH) // timedelta(milliseconds=1)
    text = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    return ms, text


def check_fields(value: Any, allowed: set[str], where: str, what: str = "a JSON object") -> dict[str, Any]:
    """A JSON object with no field outside `allowed`; errors name the path."""
    if not isinstance(value, dict):
        raise InputError(where, f"must be {what}")
    unknown = set(value) - allowed
    if unknown:
        raise InputError(f"{where}.{sorted(unknown)[0]}" if where != "body" else sorted(unknown)[0], "is not a known field")
    return value


def parse_upsert(account: str, body: Any) -> UpsertRequest:
    """Validate a whole upsert body; the first problem raises InputError naming its path."""
    check_account(account)
    check_fields(body, {"users"}, "body", "a JSON object with a 'users' list")
    users = body.get("users")
    if not isinstance(users, list) or not users:
        raise InputError("users", "must be a non-empty list")
    if len(users) > MAX_USERS:
        raise InputError("users", f"has {len(users)} users; the limit is {MAX_USERS} per request")
    drafts: list[UserDraft] = []
    total_events = 0
    for i, user in enumerate(users):
        draft = _parse_user(account, user, f"users[{i}]", total_events)
        total_events += len(draft.events)
        drafts.append(draft)
    return UpsertRequest(account=account, users=drafts)


def _parse_user(account: str, user: Any, where: str, events_before: int) -> UserDraft:
    check_fields(user, USER_FIELDS, where)
    draft = UserDraft(
        user_id=check_name(user.get("user_id"), f"{where}.user_id"),
        identifiers=_profile_part(_object(user.get("identifiers"), f"{where}.identifiers"), f"{where}.identifiers"),
        attributes=_profile_part(_object(user.get("attributes"), f"{where}.attributes"), f"{where}.attributes"),
    )
    events = user.get("events")
    if events is None:
        events = []
    if not isinstance(events, list):
        raise InputError(f"{where}.events", "must be a list")
    if events_before + len(events) > MAX_EVENTS:
        raise InputError(f"{where}.events", f"the request holds more than {MAX_EVENTS} events; split it")
    draft.events = [_parse_event(account, draft.user_id, event, f"{where}.events[{j}]") for j, event in enumerate(events)]
    return draft


def _parse_event(account: str, user_id: str, event: Any, where: str) -> EventDraft:
    check_fields(event, EVENT_FIELDS, where)
    name = check_name(event.get("event_name"), f"{where}.event_name")
    if "timestamp" not in event:
        raise InputError(f"{where}.timestamp", "is required")
    ts_ms, ts_text = _timestamp(event.get("timestamp"), f"{where}.timestamp")
    params = _object(event.get("event_params"), f"{where}.event_params")
    return EventDraft(
        event_id=event_id(account, user_id, name, ts_ms, params),
        user_id=user_id,
        event_name=name,
        timestamp=ts_text,
        params={k: render(v) for k, v in params.items()},
    )
