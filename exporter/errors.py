"""The small error hierarchy. Every error is `SomeError(message, field=...)`.

Domain code raises these and knows nothing of HTTP: `exporter.api` maps each class to an HTTP
status and a CLI exit code, in one place.
"""

from __future__ import annotations


class ExporterError(Exception):
    """Base of every error the app answers with on purpose; `field` names what it is about.

    A subclass names its code where it is declared: `class NotFoundError(ExporterError, code="not_found")`.
    """

    code = "internal_error"

    def __init_subclass__(cls, *, code: str | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def to_json(self) -> dict:
        body = {"error": {"code": self.code, "message": self.message}}
        if self.field is not None:
            body["error"]["field"] = self.field
        return body


class FieldError(ExporterError):
    """An error about one named field: `reason` says what is wrong, the message names the field too."""

    template = "{field}: {reason}"

    def __init__(self, reason: str, *, field: str):
        super().__init__(self.template.format(field=field, reason=reason), field=field)
        self.reason = reason


class InputError(FieldError, code="invalid_input"):
    """The request is malformed; `field` is its JSON path (such as users[3].events[0].timestamp)."""


class NotFoundError(ExporterError, code="not_found"):
    """What the request names does not exist."""


class ConflictError(ExporterError, code="conflict"):
    """A concurrent change won; the caller should re-read and retry."""


class StaleRecordError(ConflictError):
    """A conditional write found the record changed since it was read (an ETag mismatch)."""


class PreconditionFailed(ExporterError, code="precondition_failed"):
    """The request's If-Match names a version that is no longer the current one."""


class LimitError(ExporterError, code="limit_reached"):
    """An account limit is reached (such as its number of destinations)."""


class CredentialError(ExporterError, code="credential_error"):
    """The destination refused our credentials or permissions; delivery stops until they are fixed."""


class DestinationError(ExporterError, code="destination_error"):
    """The destination is misconfigured in a way retries cannot fix (e.g. its container is missing)."""


class TransientError(ExporterError, code="transient_error"):
    """Timeouts, 5xx, throttling, a busy concurrent writer: try again later."""


class ConfigurationError(FieldError, code="configuration_error"):
    """An app setting is missing or invalid; `field` names the setting."""

    template = "setting {field} {reason}"


class InternalError(ExporterError, code="internal_error"):
    """A bug of ours (an unexpected exception), as opposed to a fault that may pass by itself."""
