"""An integration's request bodies, validated (pure, no I/O): what a create or an update may change."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..destinations import destination_fields, destination_kind
from ..destinations.common import check_prefix, text_field
from ..errors import InputError, InternalError
from ..export.formats import FORMAT_NAMES
from ..export.plan import EventSelection
from ..notifications.config import NotifyRequest, parse_notify
from ..validation import check_fields, check_name, check_text
from ..windows import FREQUENCIES_HOURS
from .model import DestinationConfig, Status

SETTABLE_STATUSES = (Status.ACTIVE, Status.PAUSED)
BODY_FIELDS = {
    "name",
    "destination",
    "events",
    "attributes",
    "frequency_hours",
    "status",
    "format",
    "manifest",
    "notify",  # exporter/notifications
}
MAX_NAME = 200


@dataclass(frozen=True)
class DestinationParams:
    """A complete destination, to open and verify: the secret in clear, so never stored or shown."""

    type: str
    secret: str  # an Azure connection string; the JSON of the S3 or GCS credential part
    container: str | None  # the container or bucket (a SAS URL may name the container instead)
    prefix: str


@dataclass(frozen=True)
class DestinationRequest:
    """A validated destination body. On an update, None (or a field absent from `parameters`) means
    'not given': the stored value stays.

    `parameters` are the type's own fields as given: its container or bucket and its credential fields
    (Azure Blob: connection_string; S3: region, access_key_id, secret_access_key, endpoint_url; GCS:
    service_account_key, endpoint_url). An update that names no type is checked against the stored type.
    """

    type: str | None
    parameters: Mapping[str, object]
    prefix: str | None

    def complete(self) -> DestinationParams:
        """A create's destination, which validation (`partial=False`) made complete."""
        if self.type is None or self.prefix is None:
            raise InternalError("a destination was verified before it was complete")
        kind = destination_kind(self.type)
        return DestinationParams(
            self.type,
            kind.to_secret(kind.credentials(self.parameters)),
            text_field(self.parameters, kind.container_field),
            self.prefix,
        )

    def filled_from(self, stored: DestinationConfig, open_secret: Callable[[str], str]) -> DestinationParams:
        """An update's destination: what it does not give comes from the stored one (its secret opened only then).

        The type never changes: another type is another integration.
        """
        if self.type is not None and self.type != stored.type:
            raise InputError(
                f"cannot be changed from {stored.type!r}: create a new integration for a {self.type!r} "
                "destination and delete this one",
                field="destination.type",
            )
        kind = destination_kind(stored.type)
        parameters = kind.check(self.parameters, partial=True)  # refuses another type's fields
        given = kind.credentials(parameters)
        if not kind.complete(given):  # a part of the credentials: the rest stays (KEYLESS HOOK: per form)
            given = kind.merged(kind.from_secret(open_secret(stored.sealed_secret)), given)
        container = text_field(parameters, kind.container_field)
        return DestinationParams(
            type=stored.type,
            secret=kind.to_secret(given),
            container=container if container is not None else stored.container,
            prefix=self.prefix if self.prefix is not None else stored.prefix,
        )


@dataclass
class IntegrationChanges:
    """A validated create or update body; None means 'not given'."""

    name: str | None = None
    destination: DestinationRequest | None = None
    events: tuple[EventSelection, ...] | None = None
    attributes: tuple[str, ...] | None = None
    frequency_hours: int | None = None
    status: Status | None = None
    format: str | None = None
    manifest: bool | None = None
    notify: NotifyRequest | None = None


def parse_body(body: object, *, partial: bool) -> IntegrationChanges:
    """Validate a create (`partial=False`) or update body; every error names its field."""
    body = check_fields(body, BODY_FIELDS, "body")
    required = () if partial else ("name", "destination", "events", "frequency_hours")
    for needed in required:
        if needed not in body:
            raise InputError("is required", field=needed)
    if partial and not body:
        raise InputError("has no field to change", field="body")
    changes = IntegrationChanges()
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise InputError(f"must be a non-empty string of at most {MAX_NAME} characters", field="name")
        if any(unicodedata.category(c) == "Cc" for c in name):
            raise InputError("must not contain control characters", field="name")
        check_text(name, "name")
        changes.name = name.strip()
    if "destination" in body:
        changes.destination = parse_destination(body["destination"], partial=partial)
    if "events" in body:
        changes.events = _events(body["events"])
    if "attributes" in body:
        changes.attributes = _attributes(body["attributes"])
    elif not partial:
        changes.attributes = ()
    if "frequency_hours" in body:
        frequency = body["frequency_hours"]
        if isinstance(frequency, bool) or frequency not in FREQUENCIES_HOURS:
            raise InputError(f"must be one of {', '.join(map(str, FREQUENCIES_HOURS))}", field="frequency_hours")
        changes.frequency_hours = int(frequency)
    if "status" in body:
        status = body["status"]
        if not isinstance(status, str) or status not in SETTABLE_STATUSES:
            raise InputError(f"must be {' or '.join(repr(s.value) for s in SETTABLE_STATUSES)}", field="status")
        changes.status = Status(status)
    elif not partial:
        changes.status = Status.ACTIVE
    if "format" in body:
        changes.format = check_format(body["format"])
    if "manifest" in body:
        if not isinstance(body["manifest"], bool):
            raise InputError("must be true or false", field="manifest")
        changes.manifest = body["manifest"]
    if "notify" in body:
        changes.notify = parse_notify(body["notify"])
    return changes


def check_format(value: object) -> str:
    """One of the window file formats (exporter.export.formats.FORMAT_NAMES)."""
    if not isinstance(value, str) or value not in FORMAT_NAMES:
        raise InputError(f"must be one of {', '.join(repr(name) for name in FORMAT_NAMES)}", field="format")
    return value


def parse_destination(value: object, *, partial: bool) -> DestinationRequest:
    """Validate a destination body by its type's rules; on an update (`partial`) a field not given stays
    out, and a body without a type is checked against the stored type (`DestinationRequest.filled_from`)."""
    value = check_fields(value, destination_fields(), "destination")
    parameters = {name: item for name, item in value.items() if name not in ("type", "prefix")}
    kind = None
    if "type" in value or not partial:
        kind = destination_kind(value.get("type"))
        parameters = kind.check(parameters, partial=partial)
    prefix = check_prefix(value.get("prefix")) if "prefix" in value or not partial else None
    return DestinationRequest(type=kind.name if kind else None, parameters=parameters, prefix=prefix)


def _events(value: object) -> tuple[EventSelection, ...]:
    if not isinstance(value, list) or not value:
        raise InputError("must be a non-empty list: select at least one event", field="events")
    events = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        check_fields(item, {"name", "params"}, f"events[{i}]", "a JSON object with 'name' and 'params'")
        name = check_name(item.get("name"), f"events[{i}].name")
        if name in seen:
            raise InputError(f"event {name!r} is selected twice", field=f"events[{i}].name")
        seen.add(name)
        params = item.get("params", [])
        if not isinstance(params, list):
            raise InputError("must be a list of parameter keys", field=f"events[{i}].params")
        events.append(
            EventSelection(name, tuple(check_name(p, f"events[{i}].params[{j}]") for j, p in enumerate(params)))
        )
    return tuple(events)


def _attributes(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InputError("must be a list of attribute keys", field="attributes")
    keys = []
    for i, key in enumerate(value):
        key = check_name(key, f"attributes[{i}]")
        if key in keys:
            raise InputError(f"attribute {key!r} is selected twice", field=f"attributes[{i}]")
        keys.append(key)
    return tuple(keys)
