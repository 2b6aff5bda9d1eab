"""The operator CLI: JSON on stdout, --now, exit codes.

Most tests run the CLI's `main` in this process (`run_cli`: its own environment, working directory, stdin,
stdout and stderr, as a process would have them); a CLI process costs a Python start and the app's imports,
about a second of CPU each. The process itself, `python -m exporter` (the entry point, the exit status,
stdout and stderr as pipes), is tested by the smoke test's tick and by
`test_a_process_exits_with_the_code_and_json_of_its_refusal`.
"""

import argparse
import contextvars
import io
import json
import logging
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import pytest

from exporter import routes
from exporter.cli import UsageError, build_parser, main
from tests.helpers import SECRET_KEY, integration_body

# Tests that start the CLI as a subprocess are slow, but for `test_a_day_through_the_cli` (the smoke test).
pytestmark = pytest.mark.slow_tests("test_a_process_exits_with_the_code_and_json_of_its_refusal")

ROOT = Path(__file__).resolve().parent.parent
NOISY = ("azure", "urllib3", "botocore", "boto3", "s3transfer", "google")  # the loggers logs.configure quiets


def _answer(stdout: str):
    return json.loads(stdout) if stdout.strip().startswith(("{", "[")) else stdout


def run_process(env: dict, *args: str, stdin: str | None = None, cwd: Path) -> tuple[int, object, str]:
    """`python -m exporter ARGS` as an operator runs it: (exit status, the JSON answer or the text, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        timeout=120,
    )
    return done.returncode, _answer(done.stdout), done.stderr


def run_cli(env: dict, *args: str, stdin: str | None = None, cwd: Path) -> tuple[int, object, str]:
    """The same in this process: `main(ARGS)` with exactly `env` as its environment (as a process gets it; what
    local.settings.json adds is gone afterwards), `cwd` as its working directory, `stdin`, and stdout and stderr
    captured. The logging `main` configures and any context variable it sets are restored afterwards."""
    out, err = io.StringIO(), io.StringIO()
    stdin_stream = io.TextIOWrapper(io.BytesIO((stdin or "").encode()))
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {name: logging.getLogger(name).level for name in NOISY}
    here = os.getcwd()

    def call() -> int:
        try:
            return main(list(args))
        except SystemExit as done:  # --help; as a process would exit: None is 0, a message 1
            return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)

    try:
        with (
            mock.patch.dict(os.environ, env, clear=True),
            mock.patch.object(sys, "stdin", stdin_stream),
            redirect_stdout(out),
            redirect_stderr(err),
        ):
            os.chdir(cwd)
            code = contextvars.copy_context().run(call)
    finally:
        os.chdir(here)
        root.handlers[:], level, levels = saved
        root.setLevel(level)
        for name, noisy in levels.items():
            logging.getLogger(name).setLevel(noisy)
    return code, _answer(out.getvalue()), err.getvalue()


def _env(azurite_connection: str, tag: str) -> dict:
    return {
        **os.environ,
        "AzureWebJobsStorage": azurite_connection,
        "EXPORT_TABLE_PREFIX": f"c{tag}",
        "EXPORT_QUEUE_NAME": f"cli-{tag}",
        "UCD_CONTAINER": f"ucd-cli-{tag}",
        "EXPORT_SECRET_KEY": SECRET_KEY,
    }


@pytest.fixture
def cli(azurite_connection, tag, tmp_path):
    """The CLI in this process (`run_cli`) on the test's own storage names, in tmp_path."""
    env = _env(azurite_connection, tag)
    return lambda *args, stdin=None: run_cli(env, *args, stdin=stdin, cwd=tmp_path)


@pytest.fixture
def cli_process(azurite_connection, tag, tmp_path):
    """The same, as a process (`run_process`)."""
    env = _env(azurite_connection, tag)
    return lambda *args, stdin=None: run_process(env, *args, stdin=stdin, cwd=tmp_path)


def test_a_day_through_the_cli(cli, cli_process, azurite_connection, customer_container, tmp_path):
    body = integration_body(azurite_connection, customer_container.container_name)
    (tmp_path / "integration.json").write_text(json.dumps(body))
    code, created, _ = cli(
        "integrations", "create", "--account", "acme", "integration.json", "--now", "2026-11-28T10:00:00Z"
    )
    assert code == 0, created
    assert created["activated_at"] == "2026-11-28T10:00:00.000Z"
    assert "AccountKey=***" in created["destination"]["connection_string"]

    events = {
        "users": [
            {
                "user_id": "u1",
                "events": [
                    {"event_name": "purchase", "timestamp": "2026-11-28T10:30:00Z", "event_params": {"price": 3}}
                ],
            }
        ]
    }
    code, answer, _ = cli(
        "ucd", "upsert", "--account", "acme", "-", "--now", "2026-11-28T10:30:00Z", stdin=json.dumps(events)
    )
    assert (code, answer) == (0, {"received_events": 1, "stored_events": 1, "duplicate_events": 0})

    # The export by a CLI process: the entry point, its exit status and its JSON on stdout.
    code, ticked, _ = cli_process("tick", "--now", "2026-11-28T12:05:00Z")
    assert code == 0 and ticked["worker"]["windows_exported"] == 2
    names = sorted(b.name for b in customer_container.list_blobs())
    assert names == [
        f"insider/acme_events_{created['id']}_1795860000_1795863600.csv",
        f"insider/acme_events_{created['id']}_1795863600_1795867200.csv",
    ]

    code, swept, _ = cli("sweep", "--now", "2026-11-28T12:06:00Z")
    assert code == 0 and (swept["integrations"], swept["entries"], swept["missing"], swept["stale"]) == (1, 1, 0, 0)

    code, runs, _ = cli("integrations", "runs", "--account", "acme", created["id"])
    assert code == 0 and [r["rows"] for r in runs["runs"]] == [0, 1]
    code, table, _ = cli("integrations", "runs", "--account", "acme", created["id"], "--format", "table")
    assert code == 0 and "exported" in table and "window start" in table

    first = names[0]
    before = customer_container.download_blob(first).readall()
    customer_container.delete_blob(first)
    code, replayed, _ = cli("integrations", "replay", "--account", "acme", created["id"], "--start", "1795860000")
    assert code == 0 and replayed["file"] == first
    assert customer_container.download_blob(first).readall() == before
    code, shown, _ = cli("integrations", "show", "--account", "acme", created["id"])
    assert shown["last_success_end"] == "2026-11-28T12:00:00.000Z", "a replay never moves last_success_end"

    # Options and positionals in the order people type them: the positional `-` after --if-match.
    code, updated, _ = cli(
        "integrations",
        "update",
        "--account",
        "acme",
        created["id"],
        "--if-match",
        shown["etag"],
        "-",
        stdin='{"name": "renamed feed"}',
    )
    assert code == 0 and updated["name"] == "renamed feed"
    code, refused, _ = cli(
        "integrations",
        "update",
        created["id"],
        "--if-match",
        shown["etag"],
        "--account",
        "acme",
        "-",
        stdin='{"name": "again"}',
    )
    assert code == 1 and refused["error"]["code"] == "precondition_failed", "the ETag is stale after the first update"


def test_refusals_exit_non_zero_with_a_json_error_naming_the_field(cli):
    code, answer, _ = cli("ucd", "upsert", "--account", "acme", "-", stdin='{"users": [{"user_id": ""}]}')
    assert code == 1 and answer["error"]["field"] == "users[0].user_id"
    code, answer, _ = cli("ucd", "upsert", "--account", "Bad_Name", "-", stdin='{"users": []}')
    assert code == 1 and answer["error"]["field"] == "account"
    code, answer, _ = cli("integrations", "show", "--account", "acme", "nope")
    assert code == 1 and answer["error"]["code"] == "not_found"
    code, answer, _ = cli("tick", "--now", "yesterday")
    assert code == 1 and answer["error"]["field"] == "--now"
    code, answer, _ = cli("integrations", "frobnicate")
    assert code == 2 and answer["error"]["code"] == "usage"
    code, answer, _ = cli("ucd", "upsert", "--account", "acme", "missing.json")
    assert code == 1 and answer["error"]["field"] == "file"


def test_a_process_exits_with_the_code_and_json_of_its_refusal(cli_process):
    code, answer, _ = cli_process("tick", "--now", "yesterday")
    assert code == 1 and answer["error"]["field"] == "--now"
    code, answer, _ = cli_process("integrations", "frobnicate")
    assert code == 2 and answer["error"]["code"] == "usage"


def test_every_verb_has_help_with_an_example(capsys):
    # The help is the parser's (main parses before anything else).
    for verb in (
        ["ucd", "upsert"],
        ["integrations", "create"],
        ["integrations", "runs"],
        ["integrations", "replay"],
        ["tick"],
        ["serve"],
        ["demo"],
    ):
        with pytest.raises(SystemExit) as done:
            build_parser().parse_args([*verb, "--help"])
        assert done.value.code in (0, None)
        out = capsys.readouterr().out
        assert "--now" in out and "example:" in out, verb


def test_every_verb_has_an_example_and_each_operation_its_own():
    for words, parser in VERBS.items():
        text = parser.format_help()
        assert "--now" in text and "example:\n  " in text, words
        example = text.split("example:\n  ", 1)[1]
        assert f"python -m exporter {' '.join(words)}" in example, f"{' '.join(words)}: the example shows another verb"


def test_every_argument_of_every_verb_has_a_help_text():
    for words, parser in VERBS.items():
        for action in parser._actions:
            assert action.help and action.help != argparse.SUPPRESS, f"{' '.join(words)}: {action.dest} has no help"


def test_every_verb_and_verb_group_is_listed_with_a_help_text():
    parsers = [build_parser()]
    for parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(choice.help for choice in action._choices_actions), [c.dest for c in action._choices_actions]
                parsers += action.choices.values()
    assert len(parsers) == 1 + 3 + len(VERBS), "the root, the groups ucd, integrations and members, and every verb"


def test_now_is_taken_before_or_after_the_verb():
    parser = build_parser()
    assert parser.parse_args(["--now", "2026-11-28T10:00:00Z", "tick"]).now == "2026-11-28T10:00:00Z"
    assert parser.parse_args(["tick", "--now", "2026-11-28T11:00:00Z"]).now == "2026-11-28T11:00:00Z"
    assert parser.parse_args(["tick"]).now is None


def _verbs(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    """Every verb's own parser (a leaf), with the words that reach it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _verbs(sub, (*words, name))
            return
    yield words, parser


VERBS = dict(_verbs(build_parser()))
NOW = "2026-11-28T10:00:00Z"


def _sample(parser: argparse.ArgumentParser) -> tuple[list[list[str]], list[str], dict]:
    """A value for every argument of a verb: (options as [flag, value] pairs, positionals, what they parse to)."""
    options, positionals, expected = [], [], {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.dest == "now":
            continue
        if action.option_strings and action.nargs == 0:  # a switch (store_true): given, it is on
            options.append([action.option_strings[0]])
            expected[action.dest] = True
        elif action.option_strings:
            value = (
                action.choices[-1] if action.choices else ("7" if action.type in (int, float) else f"v-{action.dest}")
            )
            options.append([action.option_strings[0], value])
            expected[action.dest] = action.type(value) if action.type else value
        else:
            value = "-" if action.dest == "file" else f"p-{action.dest}"  # `-`: standard input, the case users hit
            positionals.append(value)
            expected[action.dest] = value
    return options, positionals, expected


def _orders(options: list[list[str]], positionals: list[str]) -> list[list[list[str]]]:
    """The same arguments typed in different orders, as groups of tokens (positionals keep their own order)."""
    singles = [[p] for p in positionals]

    def interleave(first, second):
        return [group for i in range(max(len(first), len(second))) for group in first[i : i + 1] + second[i : i + 1]]

    return [
        options + singles,
        singles + options,
        singles + options[::-1],
        interleave(singles, options),
        interleave(options, singles),
    ]


def test_every_verb_is_tested_for_argument_order():
    names = {" ".join(words) for words in VERBS}
    assert {op.verb for op in routes.OPERATIONS.values()} | {"tick", "sweep", "serve", "demo", "secret-key"} == names


@pytest.mark.parametrize("words", list(VERBS), ids=" ".join)
def test_options_and_positionals_mix_in_any_order_for_every_verb(words):
    parser = build_parser()
    options, positionals, expected = _sample(VERBS[words])
    now = ["--now", NOW]
    for groups in _orders(options, positionals):
        for middle in range(len(groups) + 1):  # --now after the verb: first, between any two arguments, last
            cases = [
                (["--now", NOW, *words, *sum(groups, [])], NOW),  # --now before the verb
                ([*words, *sum(groups[:middle] + [now] + groups[middle:], [])], NOW),
            ]
            if middle == 0:
                cases.append(([*words, *sum(groups, [])], None))
            for argv, expected_now in cases:
                args = vars(parser.parse_args(argv))
                assert {key: args[key] for key in expected} == expected, argv
                assert args["now"] == expected_now, argv


@pytest.mark.parametrize(
    "argv, message",
    [
        (["integrations", "show", "--account", "acme"], "the following arguments are required: id"),
        (["integrations", "update", "--account", "acme", "ID", "-", "extra"], "unrecognized arguments: extra"),
        (["integrations", "replay", "ID", "--account", "acme"], "the following arguments are required: --start"),
        (["integrations", "runs", "ID", "--limit", "many", "--account", "acme"], "--limit: invalid int value: 'many'"),
    ],
)
def test_mixed_order_still_refuses_what_is_missing_or_extra(argv, message):
    with pytest.raises(UsageError) as refused:
        build_parser().parse_args(argv)
    assert message in str(refused.value)


def test_unreachable_storage_is_a_json_error_not_a_traceback(tmp_path):
    from exporter.local.devstorage import connection_string, free_port

    closed = free_port()
    env = {
        **os.environ,
        "AzureWebJobsStorage": connection_string(closed, closed, closed),
        "EXPORT_SECRET_KEY": SECRET_KEY,
    }
    code, answer, stderr = run_cli(env, "ucd", "catalog", "--account", "acme", cwd=tmp_path)
    assert code == 3
    assert answer["error"]["code"] == "storage_unavailable"
    assert "Traceback" not in stderr


def test_devstorage_help_prints_help_without_starting_azurite(monkeypatch, capsys):
    from exporter.local import devstorage

    def started():
        raise AssertionError("--help started Azurite")

    monkeypatch.setattr(devstorage, "start_azurite", started)  # in this process: a start fails the test
    with pytest.raises(SystemExit) as done:
        devstorage.main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code in (0, None) and out.startswith("usage: python -m exporter.local.devstorage")
    assert "AccountName=" not in out


def _bare_env(**settings: str) -> dict:
    """The environment without the app's settings, then these."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "EXPORT_SECRET_KEY" and not k.startswith(("AzureWebJobsStorage", "EXPORT_", "UCD_"))
    }
    return {**env, **settings}


def _exporter(env: dict, *args: str, cwd: Path) -> tuple[int, dict, str]:
    code, answer, stderr = run_cli(env, *args, cwd=cwd)
    assert isinstance(answer, dict), answer
    return code, answer, stderr


@pytest.mark.parametrize("value", ["garbage", "AccountName=x", "UseDevelopmentStorage=false"])
def test_a_malformed_storage_setting_is_a_json_configuration_error_naming_it(tmp_path, value):
    code, answer, stderr = _exporter(
        _bare_env(AzureWebJobsStorage=value), "ucd", "catalog", "--account", "acme", cwd=tmp_path
    )
    assert code == 3 and "Traceback" not in stderr, stderr
    assert (answer["error"]["code"], answer["error"]["field"]) == ("configuration_error", "AzureWebJobsStorage")
    assert value not in answer["error"]["message"], "a setting's value may be a secret: never echoed"


def test_a_malformed_local_settings_file_is_a_json_configuration_error(tmp_path):
    (tmp_path / "local.settings.json").write_text("{not json")
    code, answer, stderr = _exporter(_bare_env(), "ucd", "catalog", "--account", "acme", cwd=tmp_path)
    assert code == 3 and "Traceback" not in stderr, stderr
    assert answer["error"]["field"] == "local.settings.json"


def test_only_operations_that_need_the_secret_key_demand_it(tmp_path, azurite_connection, tag, customer_container):
    env = _bare_env(
        AzureWebJobsStorage=azurite_connection,
        EXPORT_TABLE_PREFIX=f"k{tag}",
        UCD_CONTAINER=f"ucd-k{tag}",
        EXPORT_QUEUE_NAME=f"k-{tag}",
    )
    assert _exporter(env, "ucd", "catalog", "--account", "acme", cwd=tmp_path)[:2] == (
        0,
        {"account": "acme", "events": {}, "param_types": {}, "attributes": []},
    )
    assert _exporter(env, "integrations", "list", "--account", "acme", cwd=tmp_path)[:2] == (0, {"integrations": []})
    (tmp_path / "integration.json").write_text(
        json.dumps(integration_body(azurite_connection, customer_container.container_name))
    )
    code, answer, _ = _exporter(env, "integrations", "create", "--account", "acme", "integration.json", cwd=tmp_path)
    assert (code, answer["error"]["code"], answer["error"]["field"]) == (
        3,
        "configuration_error",
        "EXPORT_SECRET_KEY",
    ), answer
    assert list(customer_container.list_blobs()) == [], "refused before the verification wrote a test file"
    assert _exporter(env, "integrations", "list", "--account", "acme", cwd=tmp_path)[:2] == (0, {"integrations": []})
