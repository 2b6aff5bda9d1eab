"""The small error hierarchy; `exporter.api` maps it to HTTP statuses and CLI exits in one place."""
from __future__ import annotations


class ExporterError(Exception):
    """Base of every error the app answers with on purpose."""

    status = 500
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


class InputError(ExporterError):
    """The request is malformed; `field` names what is wrong (a JSON path such as users[3].events[0].timestamp)."""

    status = 400
    code = "invalid_input"

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}", field=field)
        self.reason = reason


class NotFoundError(ExporterError):
    status = 404
    code = "not_found"


class ConflictError(ExporterError):
    """A concurrent change won; the caller should re-read and retry."""

    status = 409
    code = "conflict"


class PreconditionFailed(ExporterError):
    status = 412
    code = "precondition_failed"


class LimitError(ExporterError):
    status = 409
    code = "limit_reached"


class CredentialError(ExporterError):
    """The destination refused our credentials or permissions; delivery stops until they are fixed."""

    status = 422
    code = "credential_error"


class DestinationError(ExporterError):
    """The destination is misconfigured in a way retries cannot fix (e.g. its container is missing)."""

    status = 422
    code = "destination_error"


class TransientError(ExporterError):
    """Timeouts, 5xx, throttling, a busy concurrent writer: try again later."""

    status = 503
    code = "transient_error"


class ConfigurationError(ExporterError):
    """An app setting is missing or invalid."""

    status = 500
    code = "configuration_error"

    def __init__(self, setting: str, reason: str):
        super().__init__(f"setting {setting} {reason}", field=setting)
