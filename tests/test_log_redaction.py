"""Log redaction (pure): keys and SAS signatures (and the S3 and GCS credentials: secret keys, SigV4
signatures and key ids, PEM private keys, OAuth tokens and assertions) are masked in messages,
arguments, extra fields and records of any logger, whichever handler sees them."""

import base64
import json
import logging

import pytest

from exporter import logs

ACCOUNT = "devstoreaccount1"
KEY = base64.b64encode(b"QQ-a-distinctive-account-key-for-the-redaction-tests-QQ").decode()
WRONG_KEY = base64.b64encode(b"QQ-distinctive-wrong-key-for-the-secret-scan-QQ").decode()


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc/+def==;EndpointSuffix=core.windows.net",
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=***;EndpointSuffix=core.windows.net",
        ),
        ("accountkey=abc== trailing", "accountkey=*** trailing"),
        (
            "BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=sv=2024&sp=cw&sig=abc%2B%3D;QueueEndpoint=x",
            "BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=***;QueueEndpoint=x",
        ),
        (
            "GET https://a.blob.core.windows.net/c/f.csv?sv=2024&sig=abc%2Bdef&se=2100 403",
            "GET https://a.blob.core.windows.net/c/f.csv?sv=2024&sig=***&se=2100 403",
        ),
        ("https://a/c?sig=abc", "https://a/c?sig=***"),
        (
            '{"connection_string": "AccountKey=abc", "sas": "x&SIG=def"}',
            '{"connection_string": "AccountKey=***", "sas": "x&SIG=***"}',
        ),
        ("AccountKey=one and AccountKey=two", "AccountKey=*** and AccountKey=***"),
        ("nothing to hide: design=1, signature=plain word", "nothing to hide: design=1, signature=plain word"),
    ],
)
def test_redact(text, expected):
    assert logs.redact(text) == expected


def test_redact_is_idempotent():
    once = logs.redact(f"AccountKey={KEY};x?sig=abc")
    assert logs.redact(once) == once and KEY not in once


def test_redacting_filter_cleans_message_args_and_extra_fields():
    connection = f"AccountName={ACCOUNT};AccountKey={KEY}"
    record = logging.LogRecord(
        "exporter.test", logging.ERROR, __file__, 1, "failed with %s at %s", (connection, "https://a/c?sig=SIG1"), None
    )
    record.reason = f"url https://a/c?sv=1&sig=SIG2 key AccountKey={WRONG_KEY}"
    record.rows = 3
    assert logs.RedactingFilter().filter(record) is True
    line = logs.JsonFormatter().format(record)
    for text in (record.getMessage(), line):
        assert KEY not in text and WRONG_KEY not in text and "SIG1" not in text and "SIG2" not in text
    data = json.loads(line)
    assert data["message"] == f"failed with AccountName={ACCOUNT};AccountKey=*** at https://a/c?sig=***"
    assert data["reason"] == "url https://a/c?sv=1&sig=*** key AccountKey=***"
    assert data["rows"] == 3 and data["level"] == "ERROR" and data["logger"] == "exporter.test"
    assert record.args == ()


def test_configure_and_install_redaction_redact_what_reaches_the_handlers(capsys):
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logs.configure(logging.INFO)
        logging.getLogger("exporter.test").info(
            "connecting with %s", f"AccountKey={KEY}", extra={"url": "https://a/c?sig=SIG3"}
        )
        err = capsys.readouterr().err
        assert KEY not in err and "SIG3" not in err and "AccountKey=***" in err
        assert json.loads(err.strip().splitlines()[-1])["url"] == "https://a/c?sig=***"

        host_handler = logging.StreamHandler()
        root.handlers[:] = [host_handler]
        logs.install_redaction()
        logs.install_redaction()
        assert sum(isinstance(f, logs.RedactingFilter) for f in host_handler.filters) == 1
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_records_are_redacted_when_created_even_for_handlers_added_later():
    import logging

    from exporter import logs

    logs.install_redaction()
    seen = []

    class Capture(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger = logging.getLogger("urllib3.connectionpool.test")
    handler = Capture()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("GET /c/f.csv?sv=2024&sig=SECRETSIGNATURE%%3D&se=2030 AccountKey=abc%s", "def")
    finally:
        logger.removeHandler(handler)
    assert seen and "SECRETSIGNATURE" not in seen[0] and "abcdef" not in seen[0]


@pytest.mark.parametrize(
    "text, hidden, kept",
    [
        (
            '{"secret_access_key": "wJalrXUtnFEMI/K7MDENG", "region": "eu-west-1"}',
            "wJalrXUtnFEMI",
            '"region": "eu-west-1"',
        ),
        (
            "{'private_key': '-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\n-----END PRIVATE KEY-----\\n', 'x': 1}",
            "MIIEvQIBADANBg",
            "'x': 1",
        ),
        (
            "key -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY----- end",
            "MIIEpAIBAAKCAQEA",
            " end",
        ),
        (
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261128/us-east-1/s3/aws4_request, "
            "SignedHeaders=host, Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024",
            "fe5f80f77d5fa3be",
            "SignedHeaders=host",
        ),
        ("Credential=AKIAIOSFODNN7EXAMPLE/20261128", "IOSFODNN7EXAMPLE", "Credential=AKIA"),
        ("GET /b/o?X-Amz-Signature=abcdef0123456789abcdef&X-Amz-Date=1", "abcdef0123456789", "X-Amz-Date=1"),
        ("Authorization: Bearer ya29.a0AfH6SMBx-token_value", "ya29.a0AfH6SMBx", "Authorization: Bearer ***"),
        ('{"access_token": "ya29.secret", "expires_in": 3600}', "ya29.secret", '"expires_in": 3600'),
        (
            "grant_type=jwt-bearer&assertion=eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.sig",
            "eyJhbGciOiJSUzI1NiJ9",
            "grant_type=jwt-bearer",
        ),
    ],
)
def test_redact_cloud_credentials(text, hidden, kept):
    redacted = logs.redact(text)
    assert hidden not in redacted and kept in redacted, redacted
    assert logs.redact(redacted) == redacted


def test_structured_extras_and_sts_credentials_are_redacted():
    """google-auth logs each request's headers as a dict at DEBUG; STS answers carry session credentials."""
    record = logging.getLogger("google.auth.transport.requests").makeRecord(
        "google.auth.transport.requests",
        logging.DEBUG,
        "f",
        1,
        "Making request...",
        (),
        None,
        extra={"httpRequest": {"headers": {"Authorization": "Bearer federated-abc123"}}, "plain": [1, 2]},
    )
    logs.RedactingFilter().filter(record)
    assert record.httpRequest == {"headers": {"Authorization": "Bearer ***"}} and record.plain == [1, 2]
    sts = "<SecretAccessKey>abc+/d</SecretAccessKey><SessionToken>FQo//x==</SessionToken>"
    assert logs.redact(sts) == "<SecretAccessKey>***</SecretAccessKey><SessionToken>***</SessionToken>"
    assert logs.redact("'X-Amz-Security-Token': b'FQoGZ/+x='") == "'X-Amz-Security-Token': b'***'"
