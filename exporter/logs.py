"""Logging that cannot leak a secret: a filter that redacts keys and SAS tokens from every record."""

from __future__ import annotations

import json
import logging
import re
import sys

_PATTERNS = [
    re.compile(r"(AccountKey=)[^;\s\"']+", re.IGNORECASE),
    re.compile(r"(SharedAccessSignature=)[^;\s\"']+", re.IGNORECASE),
    re.compile(r"([?&]sig=)[^&\s\"']+", re.IGNORECASE),
    # S3 and GCS: secrets in JSON or repr text, PEM private keys, SigV4 signatures and key ids, OAuth tokens.
    re.compile(
        r"""(["'](?:aws_)?(?:secret_access_key|private_key|access_token|refresh_token|client_secret|assertion)["']\s*:\s*["'])(?:[^"'\\]|\\.)*""",
        re.IGNORECASE,
    ),
    re.compile(r"(-----BEGIN [A-Z ]*PRIVATE KEY-----)(?:\\n|[\sA-Za-z0-9+/=])+(?:-----END [A-Z ]*PRIVATE KEY-----)?"),
    re.compile(r"((?:aws_)?secret_access_key=|[?&]assertion=|[?&]access_token=)[^&\s\"';,]+", re.IGNORECASE),
    re.compile(r"((?:X-Amz-)?Signature=)[0-9a-f]{16,}", re.IGNORECASE),
    re.compile(r"(Credential=[A-Z0-9]{4})[A-Z0-9]{8,}"),
    re.compile(
        r"""((?:["']access_key_id["']\s*:\s*["']|aws_access_key_id=)[A-Za-z0-9]{4})[A-Za-z0-9]{8,}""", re.IGNORECASE
    ),
    re.compile(r"(Bearer )[A-Za-z0-9._~+/-]+=*"),
    # Session credentials of an assumed role (S3 by role): STS's answer (XML) and the session token header.
    re.compile(r"(<(?:SecretAccessKey|SessionToken)>)[^<]+"),
    re.compile(
        r"""(["']?(?:SecretAccessKey|SessionToken|X-Amz-Security-Token|aws_session_token)["']?\s*[:=]\s*b?["']?)[^"'\s,<}]+""",
        re.IGNORECASE,
    ),
]
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


def _redact_record(record: logging.LogRecord) -> None:
    record.msg = redact(record.getMessage())
    record.args = ()
    for key, value in list(record.__dict__.items()):
        if key not in _STANDARD and isinstance(value, str):
            setattr(record, key, redact(value))
        elif key not in _STANDARD and isinstance(value, (dict, list, tuple)):
            # Structured extras too: google-auth logs each request's headers (a bearer token) as a dict at DEBUG.
            setattr(record, key, _redact_structure(value))


def _redact_structure(value: dict | list | tuple) -> object:
    """A structured value, redacted as its JSON text (and parsed back when the redaction left it JSON)."""
    text = json.dumps(value, default=str)
    cleaned = redact(text)
    if cleaned == text:
        return value
    try:
        return json.loads(cleaned)
    except ValueError:
        return cleaned


class RedactingFilter(logging.Filter):
    """On handlers: catches the `extra` fields, which are set after a record is created."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


_factory_installed = False


def _install_record_factory() -> None:
    """Redact every record as it is created, so even handlers added later (an Application Insights
    handler, a test's capture) never see a key or a SAS signature (urllib3 logs full URLs at DEBUG)."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the record's structured fields (integration, window, rows, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        data = {"level": record.levelname, "logger": record.name, "message": record.getMessage()}
        data.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        return json.dumps(data, default=str)


def configure(level: int = logging.INFO) -> None:
    """Structured, redacted logs on stderr (stdout is reserved for the CLI's JSON answers)."""
    _install_record_factory()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("azure", "urllib3", "botocore", "boto3", "s3transfer", "google"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def install_redaction() -> None:
    """Inside the Functions host, whose handlers we do not own: redact records at creation and on every handler."""
    _install_record_factory()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
