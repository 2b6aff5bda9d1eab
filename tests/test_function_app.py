"""The function app indexes: every trigger present, every binding's arg_name is a real parameter."""
import inspect
import json
import subprocess
import sys

import function_app
from exporter import api


# get_functions() validates names into state it keeps, so a second call fails: index once.
FUNCTIONS = {f.get_function_name(): f for f in function_app.app.get_functions()}


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
    assert sum("httpTrigger" in k for k in kinds.values()) >= 8


def test_every_binding_arg_name_matches_a_handler_parameter():
    for name, fn in _functions().items():
        parameters = set(inspect.signature(fn.get_user_function()).parameters)
        for binding in json.loads(fn.get_function_json())["bindings"]:
            if binding["name"] == "$return":
                continue
            assert binding["name"] in parameters, f"{name}: binding {binding['name']!r} has no parameter"


def test_queue_bindings_use_the_settings_queue_and_its_poison_queue():
    bindings = {n: json.loads(f.get_function_json())["bindings"][0] for n, f in _functions().items()}
    assert bindings["export_worker"]["queueName"] == "%EXPORT_QUEUE_NAME%"
    assert bindings["export_poison"]["queueName"] == "%EXPORT_QUEUE_NAME%-poison"
    assert bindings["scheduler"]["schedule"] == "0 * * * * *"


def test_every_api_route_has_an_http_trigger_with_its_method():
    routes = {}
    for fn in FUNCTIONS.values():
        for binding in json.loads(fn.get_function_json())["bindings"]:
            if binding["type"] == "httpTrigger":
                routes[binding["route"]] = {m.upper() for m in binding["methods"]}
    for method, template, _operation in api.ROUTES:
        assert method in routes.get(template, set()), f"{method} {template} is not bound"


def test_import_function_app_in_a_fresh_interpreter():
    out = subprocess.run([sys.executable, "-c", "import function_app; print(len(function_app.app.get_functions()))"],
                         capture_output=True, text=True, check=True)
    assert int(out.stdout.strip()) >= 11
