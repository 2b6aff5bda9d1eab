"""The one mapping of errors to answers (exporter.api.handle)."""

from azure.core.exceptions import ServiceRequestError

from tests.helpers import call


def test_our_storage_failing_is_a_503_to_retry_without_the_exception_text(ctx, monkeypatch):
    def down(*_args, **_kwargs):
        raise ServiceRequestError("connection refused to http://127.0.0.1:1/devstoreaccount1?sig=SECRET")

    monkeypatch.setattr(ctx.ucd, "catalog", down)
    answer = call(ctx, "ucd_catalog", account="acme")
    assert answer.status == 503 and answer.body["error"]["code"] == "transient_error"
    assert "SECRET" not in str(answer.body)


def test_an_unexpected_failure_is_a_generic_500(ctx, monkeypatch):
    monkeypatch.setattr(ctx.ucd, "catalog", lambda *_: 1 / 0)
    answer = call(ctx, "ucd_catalog", account="acme")
    assert answer.status == 500 and answer.body == {
        "error": {"code": "internal_error", "message": "unexpected failure; see the logs"}
    }


def test_deleting_a_user_whose_id_cannot_be_a_key_is_refused_as_input(ctx):
    answer = call(ctx, "ucd_delete_user", account="acme", user_id="x" * 300)
    assert answer.status == 400 and answer.body["error"]["field"] == "user_id"


def test_replay_needs_a_delivered_window(ctx, customer_body):
    iid = call(ctx, "integrations_create", customer_body, account="acme").body["id"]
    assert call(ctx, "integrations_replay", {"start": "soon"}, account="acme", id=iid).body["error"]["field"] == "start"
    answer = call(ctx, "integrations_replay", {"start": 1795860000}, account="acme", id=iid)
    assert answer.status == 404 and answer.body["error"]["field"] == "start"


def test_our_storage_refusing_a_request_as_malformed_is_a_500_not_a_retry(ctx, monkeypatch):
    """A 400 from our own storage will be a 400 again: answering "503, retry" would make clients retry forever."""
    from azure.core.exceptions import HttpResponseError

    class Refused:
        status_code = 400
        reason = "Bad Request"
        headers = {"x-ms-error-code": "OutOfRangeInput"}

        def text(self):
            return ""

    def refuse(*_args, **_kwargs):
        raise HttpResponseError(message="OutOfRangeInput", response=Refused())

    monkeypatch.setattr(ctx.ucd, "catalog", refuse)
    answer = call(ctx, "ucd_catalog", account="acme")
    assert answer.status == 500 and answer.body["error"]["code"] == "internal_error", answer.body
