"""Validation of an upsert body, all of it before anything is stored (bad input: docs/invariants.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ..clock import parse_instant
from ..errors import InputError
from ..validation import check_account, check_fields, check_name, check_text
from .values import Json, event_id, render, value_kind

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_USERS = 10_000
MAX_EVENTS = 50_000
# A profile's attributes and identifiers are each one Table Storage string property.
MAX_PROFILE_CHARS = 30_000
USER_FIELDS = {"user_id", "identifiers", "attributes", "events"}
EVENT_FIELDS = {"event_name", "timestamp", "event_params"}


@dataclass(frozen=True)
class EventDraft:
    """One event of a request, normalised: the identity and every cell value are fixed here."""

    event_id: str
    user_id: str
    event_name: str
    timestamp: str  # ISO 8601 UTC with milliseconds
    params: dict[str, str | None]
    kinds: dict[str, str] = field(default_factory=dict)  # each non-null parameter's kind, for the catalog


@dataclass
class UserDraft:
    user_id: str
    identifiers: dict[str, Json] = field(default_factory=dict)
    attributes: dict[str, Json] = field(default_factory=dict)
    events: list[EventDraft] = field(default_factory=list)


@dataclass
class UpsertRequest:
    account: str
    users: list[UserDraft]

    @property
    def received_events(self) -> int:
        return sum(len(u.events) for u in self.users)


def _object(value: object, field_name: str) -> dict[str, Json]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError("must be a JSON object", field=field_name)
    for key, item in value.items():
        check_name(key, f"{field_name} key")
        check_text(item, f"{field_name}.{key}")
    return value


def _profile_part(value: dict[str, Json], field_name: str) -> dict[str, Json]:
    if len(json.dumps(value, separators=(",", ":"), ensure_ascii=False)) > MAX_PROFILE_CHARS:
        raise InputError(f"is larger than {MAX_PROFILE_CHARS} characters as JSON", field=field_name)
    return value


def _timestamp(value: object, field_name: str) -> tuple[int, str]:
    # Refused rather than trimmed: the body is the event's record, and the shared parser's trimming is
    # for command-line and stored values, not a licence for loose input (docs/architecture.md).
    if isinstance(value, str) and value != value.strip():
        raise InputError("must not have leading or trailing whitespace", field=field_name)
    try:
        when = parse_instant(value, field_name) if isinstance(value, str) else None
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise InputError("is out of range", field=field_name) from None
    if when is None:
        raise InputError("must be an ISO 8601 date-time string", field=field_name)
    if not (EPOCH <= when < datetime(9999, 1, 1, tzinfo=timezone.utc)):
        raise InputError("is out of range", field=field_name)
    ms = (when - EPOCH) // timedelta(milliseconds=1)
    text = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    return ms, text


def parse_upsert(account: str, body: object) -> UpsertRequest:
    """Validate a whole upsert body; the first problem raises InputError naming its path."""
    check_account(account)
    users = check_fields(body, {"users"}, "body", "a JSON object with a 'users' list").get("users")
    if not isinstance(users, list) or not users:
        raise InputError("must be a non-empty list", field="users")
    if len(users) > MAX_USERS:
        raise InputError(f"has {len(users)} users; the limit is {MAX_USERS} per request", field="users")
    drafts: list[UserDraft] = []
    total_events = 0
    for i, user in enumerate(users):
        draft = _parse_user(account, user, f"users[{i}]", total_events)
        total_events += len(draft.events)
        drafts.append(draft)
    return UpsertRequest(account=account, users=drafts)


def _parse_user(account: str, body: object, where: str, events_before: int) -> UserDraft:
    user = check_fields(body, USER_FIELDS, where)
    draft = UserDraft(
        user_id=check_name(user.get("user_id"), f"{where}.user_id"),
        identifiers=_profile_part(_object(user.get("identifiers"), f"{where}.identifiers"), f"{where}.identifiers"),
        attributes=_profile_part(_object(user.get("attributes"), f"{where}.attributes"), f"{where}.attributes"),
    )
    events = user.get("events")
    if events is None:
        events = []
    if not isinstance(events, list):
        raise InputError("must be a list", field=f"{where}.events")
    if events_before + len(events) > MAX_EVENTS:
        raise InputError(f"the request holds more than {MAX_EVENTS} events; split it", field=f"{where}.events")
    draft.events = [
        _parse_event(account, draft.user_id, event, f"{where}.events[{j}]") for j, event in enumerate(events)
    ]
    return draft


def _parse_event(account: str, user_id: str, body: object, where: str) -> EventDraft:
    event = check_fields(body, EVENT_FIELDS, where)
    name = check_name(event.get("event_name"), f"{where}.event_name")
    if "timestamp" not in event:
        raise InputError("is required", field=f"{where}.timestamp")
    ts_ms, ts_text = _timestamp(event.get("timestamp"), f"{where}.timestamp")
    params = _object(event.get("event_params"), f"{where}.event_params")
    return EventDraft(
        event_id=event_id(account, user_id, name, ts_ms, params),
        user_id=user_id,
        event_name=name,
        timestamp=ts_text,
        params={k: render(v) for k, v in params.items()},
        kinds={k: value_kind(v) for k, v in params.items() if v is not None},
    )
