"""Answers about a destination are in our words: a redirect is refused naming the field (never followed);
whatever listens at a customer's address (nothing, something that is not HTTP, an HTTP server answering
junk) gets the very same answer, in about the same time, with nothing it sent repeated; and a bug of ours
inside a destination is neither a customer's error nor weather: it ends as an internal error, recorded on
the run with its traceback logged.

Everything here is on loopback, with the setting that allows it (as in local use and CI)."""

from __future__ import annotations

import json
import logging
import time

import pytest

from exporter import egress
from exporter.destinations.s3_errors import S3Errors
from exporter.errors import InternalError, TransientError
from exporter.integrations.model import Status
from exporter.jobs import schedule
from exporter.local.devstorage import free_port
from exporter.runs import RunStatus
from exporter.windows import Window
from tests.destination_helpers import behind
from tests.egress_helpers import ADDRESS_FIELDS, Listener, body_for, http_answer, strict, with_path
from tests.export_helpers import ACCOUNT, ACT, H, deliver_one, tick_collecting
from tests.helpers import call

JUNK_XML = b"<?xml version='1.0'?><Error><Code>InternalBanner</Code><Message>secret-ish banner</Message></Error>"
JUNK_JSON = b'{"error": "InternalBanner", "error_description": "secret-ish banner", "code": 418}'


def verify(ctx, body):
    return call(ctx, "integrations_verify", body, account=ACCOUNT)


def body_at(address_field: str, base: str, token_endpoint) -> dict:
    return body_for(address_field, with_path(address_field, base), token_uri=f"{token_endpoint.url}/token")


# ------------------------------------------------------------------ redirects are refused, never followed


@pytest.mark.parametrize("status", ["302 Found", "307 Temporary Redirect"])
@pytest.mark.parametrize("address_field", ADDRESS_FIELDS)
def test_a_redirect_is_refused_naming_the_field_and_never_followed(ctx, token_endpoint, address_field, status):
    target = Listener(http_answer("200 OK", b"{}"))
    redirector = Listener(http_answer(status, b"", headers=f"Location: {target.url}/elsewhere\r\n"))
    try:
        answer = verify(ctx, body_at(address_field, redirector.url, token_endpoint))
        assert answer.status == 400, answer.body
        assert answer.body["error"]["field"] == ADDRESS_FIELDS[address_field], answer.body
        assert "redirect" in answer.body["error"]["message"]
        assert redirector.connections >= 1 and target.connections == 0, "the redirect was not followed"
    finally:
        target.stop()
        redirector.stop()


# ------------------------------------------------------------------ the same answer whatever listens there


@pytest.mark.parametrize("address_field", ADDRESS_FIELDS)
def test_a_closed_port_an_open_port_and_a_junk_server_get_the_same_answer(ctx, token_endpoint, address_field):
    closed = free_port()
    listeners = {
        "not HTTP": Listener(b"SSH-2.0-OpenSSH_9.6 InternalBanner\r\n", banner=True),
        "junk XML": Listener(http_answer("418 I'm a teapot", JUNK_XML, "Content-Type: application/xml\r\n")),
        "junk JSON": Listener(http_answer("418 I'm a teapot", JUNK_JSON, "Content-Type: application/json\r\n")),
        "a 200 that is nothing": Listener(http_answer("200 OK", b"not json <xml", "Content-Type: text/html\r\n")),
    }
    try:
        answers, times = {}, {}
        for name, base in [("closed", f"http://127.0.0.1:{closed}")] + [(n, li.url) for n, li in listeners.items()]:
            if name == "a 200 that is nothing" and address_field != "gcs token_uri":
                continue  # a server saying 200 to a write is taken at its word: only a token answer can be checked
            started = time.monotonic()
            answer = verify(ctx, body_at(address_field, base, token_endpoint))
            times[name] = time.monotonic() - started
            port = base.rsplit(":", 1)[1]
            answers[name] = (answer.status, json.loads(answer.text().replace(port, "PORT")))
        first = answers["closed"]
        assert first[0] == 422 and first[1]["error"]["code"] == "destination_error", first
        assert all(a == first for a in answers.values()), answers
        text = json.dumps(first)
        for leak in ("InternalBanner", "banner", "418", "teapot", "SSH", "Error", "JSONDecodeError", "status"):
            assert leak not in text, (leak, text)
        assert all(t < 3 for t in times.values()), f"verification does not retry a customer's endpoint: {times}"
    finally:
        for listener in listeners.values():
            listener.stop()


# ------------------------------------------------------------------ at export time: checked at every connection


KIT_FIELD = {
    "azure_blob": "destination.connection_string",
    "s3": "destination.endpoint_url",
    "gcs": "destination.service_account_key.token_uri",  # a key's token comes first
}


def test_an_export_whose_address_is_no_longer_allowed_stops_naming_the_field(ctx, clock, kit):
    """Stored while the local servers were allowed; exported under the production policy: every connection
    is checked again, so delivery stops with a destination error naming the field, and nothing is dialled."""
    iid = behind(ctx, clock, kit, 1)
    with egress.using(strict(dial=True)) as policy:
        results = []
        tick_collecting(ctx, results)
    assert results[0].stopped == "destination_error"
    integration = ctx.repo.get(ACCOUNT, iid)
    assert integration.status == Status.DESTINATION_ERROR
    assert integration.last_error.startswith(KIT_FIELD[kit.kind] + ": must name a host on the public internet")
    assert policy.connect.attempts == [] and kit.names() == []


# ------------------------------------------------------------------ a bug of ours is a bug, not weather


def test_the_error_map_passes_a_bug_through_with_its_traceback():
    errors = S3Errors("acme-exports", "us-east-1", None)
    with pytest.raises(TypeError) as raised, errors.mapped("write"):
        raise TypeError("a bug of ours")
    assert raised.value.__traceback__ is not None and "a bug of ours" in str(raised.value)


def break_inside_the_sdk_call(destination) -> None:
    """A TypeError raised where the destination calls its SDK: inside its error map, as a bug of ours would be."""

    def bug(*args, **kwargs):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    kind = type(destination).__name__
    if kind == "S3Destination":
        destination.client.create_multipart_upload = bug
        destination.client.put_object = bug
    elif kind == "GcsDestination":
        destination._http.put = bug
        destination.client.bucket = bug
    else:
        destination.client.get_blob_client = bug


def test_a_destination_raising_a_type_error_ends_as_an_internal_error_on_the_run(ctx, clock, kit, monkeypatch, caplog):
    from exporter.destinations import open_destination

    iid = behind(ctx, clock, kit, 1)

    def broken(*args):
        destination = open_destination(*args)
        break_inside_the_sdk_call(destination)
        return destination

    monkeypatch.setattr(ctx, "open_destination", broken)
    schedule(ctx)
    caplog.set_level(logging.INFO, logger="exporter")
    with pytest.raises(InternalError) as raised:
        deliver_one(ctx)
    assert isinstance(raised.value.__cause__, TypeError), "the bug itself is kept, not re-raised as weather"
    assert not isinstance(raised.value, TransientError)
    record = ctx.runs.get(ACCOUNT, iid, Window(ACT, ACT + H).start_unix)
    assert (record.status, record.error) == (RunStatus.FAILED, "internal error (TypeError)")
    bugs = [r for r in caplog.records if "bug: unexpected TypeError" in r.getMessage()]
    trace = bugs[0].traceback if bugs else ""
    assert "unsupported operand" in trace and "in bug" in trace and "exporter/destinations/" in trace, trace
    assert not any("will retry" in r.getMessage() for r in caplog.records if r.name.startswith("exporter.jobs"))
    assert ctx.repo.get(ACCOUNT, iid).last_success_end is None
