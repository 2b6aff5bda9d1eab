"""The small error hierarchy. Every error is `SomeError(message, field=...)`.

Domain code raises these and knows nothing of HTTP: `exporter.api` maps each class to an HTTP
status and a CLI exit code, in one place.
"""

from __future__ import annotations


class ExporterError(Exception):
    """Base of every error the app answers with on purpose; `field` names what it is about."""

    code = "internal_error"

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


class InputError(FieldError):
    """The request is malformed; `field` is its JSON path (such as users[3].events[0].timestamp)."""

    code = "invalid_input"


class NotFoundError(ExporterError):
    code = "not_found"


class ConflictError(ExporterError):
    """A concurrent change won; the caller should re-read and retry."""

    code = "conflict"


class StaleRecordError(ConflictError):
    """A conditional write found the record changed since it was read (an ETag mismatch)."""


class PreconditionFailed(ExporterError):
    code = "precondition_failed"


class LimitError(ExporterError):
    code = "limit_reached"


class CredentialError(ExporterError):
    """The destination refused our credentials or permissions; delivery stops until they are fixed."""

    code = "credential_error"


class DestinationError(ExporterError):
    """The destination is misconfigured in a way retries cannot fix (e.g. its container is missing)."""

    code = "destination_error"


class TransientError(ExporterError):
    """Timeouts, 5xx, throttling, a busy concurrent writer: try again later."""

    code = "transient_error"


class ConfigurationError(FieldError):
    """An app setting is missing or invalid; `field` names the setting."""

    code = "configuration_error"
    template = "setting {field} {reason}"


class InternalError(ExporterError):
    """A bug of ours (an unexpected exception), as opposed to a fault that may pass by itself."""

    code = "internal_error"
