"""The function app indexes: every trigger present, every binding's arg_name is a real parameter."""

import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path

import azure.functions as func

from exporter import api, routes, triggers
from tests.app_functions import FUNCTIONS  # indexed once per process, shared with the day test

ROOT = Path(__file__).resolve().parent.parent


def _functions():
    return FUNCTIONS


def test_timer_queue_and_http_triggers_are_indexed():
    kinds = {}
    for name, fn in _functions().items():
        bindings = json.loads(fn.get_function_json())["bindings"]
        kinds[name] = {b["type"] for b in bindings}
    assert "timerTrigger" in kinds["scheduler"]
    assert "queueTrigger" in kinds["export_worker"]
    assert "queueTrigger" in kinds["export_poison"]
    assert "queueTrigger" in kinds["export_notify"]
    assert sum("httpTrigger" in k for k in kinds.values()) >= 8


def test_every_binding_arg_name_matches_a_handler_parameter():
    # As the Python worker checks at load: parameters and bindings match both ways, annotations are types.
    for name, fn in _functions().items():
        handler = fn.get_user_function()
        parameters = set(inspect.signature(handler).parameters)
        bound = {b["name"] for b in json.loads(fn.get_function_json())["bindings"]} - {"$return"}
        assert bound == parameters, f"{name}: bindings {bound} but parameters {parameters}"
        hints = typing.get_type_hints(handler)
        assert all(isinstance(hint, type) for hint in hints.values()), f"{name}: {hints}"
        if name in {r.function for r in routes.ROUTES}:
            assert hints == {"req": func.HttpRequest, "return": func.HttpResponse}, name


def test_queue_bindings_use_the_settings_queue_and_its_poison_queue():
    bindings = {n: json.loads(f.get_function_json())["bindings"][0] for n, f in _functions().items()}
    assert bindings["export_worker"]["queueName"] == "%EXPORT_QUEUE_NAME%"
    assert bindings["export_poison"]["queueName"] == "%EXPORT_QUEUE_NAME%-poison"
    assert bindings["export_notify"]["queueName"] == "%EXPORT_QUEUE_NAME%-notify"
    assert bindings["scheduler"]["schedule"] == "0 * * * * *"


# The HTTP contract (docs/architecture.md, "HTTP API and CLI"): method, route under /api, status of a success.
CONTRACT = {
    ("POST", "ucd/{account}/upsert", 200),
    ("DELETE", "ucd/{account}/users/{user_id}", 200),
    ("GET", "ucd/{account}/catalog", 200),
    ("POST", "accounts/{account}/integrations/verify", 200),
    ("POST", "accounts/{account}/integrations", 201),
    ("GET", "accounts/{account}/integrations", 200),
    ("GET", "accounts/{account}/integrations/{id}", 200),
    ("PATCH", "accounts/{account}/integrations/{id}", 200),
    ("DELETE", "accounts/{account}/integrations/{id}", 200),
    ("POST", "accounts/{account}/integrations/{id}/pause", 200),
    ("POST", "accounts/{account}/integrations/{id}/resume", 200),
    ("GET", "accounts/{account}/integrations/{id}/runs", 200),
    ("GET", "accounts/{account}/integrations/{id}/history", 200),
    ("POST", "accounts/{account}/integrations/{id}/replay", 200),
    ("GET", "accounts/{account}/integrations/{id}/audit", 200),
    ("POST", "accounts/{account}/integrations/{id}/rotate-notify-secret", 200),
    ("GET", "accounts/{account}/members", 200),
    ("PUT", "accounts/{account}/members/{user}", 200),
    ("DELETE", "accounts/{account}/members/{user}", 200),
    ("GET", "accounts/{account}/history", 200),
    ("GET", "accounts/{account}/identity", 200),
}


def test_the_route_table_is_the_http_contract():
    assert {(op.method, op.template, op.status) for op in routes.OPERATIONS.values()} == CONTRACT
    assert set(routes.OPERATIONS) == set(api.OPERATIONS), "every operation has code, and every piece of code a route"
    templates = [r.template for r in routes.ROUTES]
    assert len(set(templates)) == len(templates), "one Functions function per route template"


def test_every_route_is_one_http_function_bound_with_its_methods():
    bound = {}
    for name, fn in FUNCTIONS.items():
        for binding in json.loads(fn.get_function_json())["bindings"]:
            if binding["type"] == "httpTrigger":
                bound[name] = (binding["route"], sorted(m.upper() for m in binding["methods"]), binding["authLevel"])
    console = {"console_home": ("console", ["GET", "HEAD", "POST"], "ANONYMOUS")}
    console["console_pages"] = ("console/{*path}", ["GET", "HEAD", "POST"], "ANONYMOUS")
    # host.json's routePrefix is empty (the console is at /console): the API's routes name /api themselves.
    assert bound == {r.function: ("api/" + r.template, sorted(r.methods), "FUNCTION") for r in routes.ROUTES} | console
    # The names the host knows (and keys function keys by) stay what they were before the table.
    assert set(bound) == {
        "ucd_upsert",
        "ucd_user",
        "ucd_catalog",
        "integrations_verify",
        "integrations",
        "integration",
        "integration_pause",
        "integration_resume",
        "integration_runs",
        "integration_replay",
        "integration_history",
        "integration_audit",
        "integration_notify_secret",
        "account_history",
        "account_identity",
        "members",
        "member",
        "console_home",
        "console_pages",
    }


def test_each_http_function_dispatches_its_own_route(monkeypatch):
    seen = []
    monkeypatch.setattr(triggers, "http", lambda route, req: seen.append(route))
    for r in routes.ROUTES:
        FUNCTIONS[r.function].get_user_function()(req=None)
    assert seen == list(routes.ROUTES)


def test_a_method_the_route_does_not_serve_is_a_405():
    handler = FUNCTIONS["ucd_catalog"].get_user_function()
    answer = handler(func.HttpRequest("PUT", "/api/ucd/acme/catalog", body=b"", route_params={"account": "acme"}))
    assert answer.status_code == 405 and json.loads(answer.get_body())["error"]["code"] == "method_not_allowed"
    assert answer.headers["Allow"] == "GET"


def test_import_function_app_in_a_fresh_interpreter():
    code = "import function_app; from exporter import routes; print(len(function_app.app.get_functions()), len(routes.ROUTES))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    functions, http_routes = map(int, out.stdout.split())
    assert (
        functions == 5 + http_routes + 2 == 24
    )  # two timers, three queues (jobs, poison, notifications), the API's routes (the identity's too), the console


def test_local_tools_are_not_deployed_and_nothing_deployed_imports_them():
    assert "exporter/local" in (ROOT / ".funcignore").read_text().splitlines()
    # Every deployed module (the CLI too: it imports the local tools only inside the verbs that use them).
    code = """
import importlib, sys
from pathlib import Path
import function_app
from exporter import cli
cli.build_parser().parse_args(["integrations", "runs", "--account", "acme", "x", "--format", "table"])
for path in sorted(Path("exporter").rglob("*.py")):
    parts = path.with_suffix("").parts
    if "local" not in parts and parts[-1] != "__main__":
        importlib.import_module(".".join(p for p in parts if p != "__init__"))
print(sorted(m for m in sys.modules if m.startswith("exporter.local")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_a_malformed_storage_setting_answers_http_in_json_naming_it(monkeypatch):
    monkeypatch.setenv("AzureWebJobsStorage", "garbage")
    triggers.use_context(None)
    try:
        handler = FUNCTIONS["ucd_catalog"].get_user_function()
        answer = handler(func.HttpRequest("GET", "/api/ucd/acme/catalog", body=b"", route_params={"account": "acme"}))
    finally:
        triggers.use_context(None)
    body = json.loads(answer.get_body())
    assert answer.status_code == 500 and answer.mimetype == "application/json"
    assert (body["error"]["code"], body["error"]["field"]) == ("configuration_error", "AzureWebJobsStorage"), body
