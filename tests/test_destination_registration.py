"""A destination type is its module plus one registration line: a type the code base has never heard of
(tests/folder_destination.py) is registered, and the API, the console's form, the CLI's choices, the demo's
target and the tests' kit all take it from its `DestinationKind`; an export into it delivers each window's
file exactly once."""

from __future__ import annotations

import pytest

from exporter.cli import build_parser
from exporter.console.fields import fields_of, type_name
from exporter.console.messages import field_labels
from exporter.destinations import DESTINATION_KINDS, destination_types, register, unregister
from exporter.destinations.common import DestinationKind, Form
from exporter.local.demotargets import open_demo_target
from exporter.local.host import tick
from tests import folder_destination
from tests.destination_helpers import TargetKit, behind, integration_body, make_kit
from tests.export_helpers import ACCOUNT, assert_exactly_once
from tests.helpers import call


@pytest.fixture
def folder():
    """The folder type, registered by its one line for the test, withdrawn after it."""
    register(folder_destination.KIND)
    yield folder_destination.KIND
    unregister(folder_destination.KIND.name)


def test_a_registered_type_is_offered_everywhere(folder, azurite_connection):
    assert destination_types()[-1] == "folder"
    assert type_name("folder") == "A Local Folder"
    fields = {f.name: f for f in fields_of(folder)}
    assert [f.label for f in fields.values()] == ["Root Directory", "Folder Name", "Path Prefix"]
    assert fields["root"].secret and fields["folder"].required and not fields["folder"].secret
    assert field_labels("folder")["root"] == "Root Directory"
    assert build_parser().parse_args(["demo", "--destination", "folder"]).destination == "folder"
    target = open_demo_target("folder", azurite_connection)
    try:
        assert target.body["folder"] == "customer-exports" and target.names() == []
    finally:
        target.stop()


def test_a_type_withdrawn_is_refused_naming_the_field(folder, ctx, tmp_path):
    body = integration_body({"type": "folder", "prefix": "exports/"})
    assert call(ctx, "integrations_create", body, account=ACCOUNT).body["error"]["field"] == "destination.folder"
    unregister("folder")
    answer = call(ctx, "integrations_create", body, account=ACCOUNT)
    assert answer.status == 400 and answer.body["error"]["field"] == "destination.type", answer.body
    assert "folder" not in answer.body["error"]["message"], "the types offered are the registered ones"


def test_its_body_is_checked_by_its_own_rules(folder, ctx, tmp_path):
    for destination, field in [
        ({"type": "folder", "folder": "exports"}, "destination.root"),
        ({"type": "folder", "folder": "Exports!", "root": str(tmp_path)}, "destination.folder"),
        ({"type": "folder", "folder": "exports", "root": "relative/dir"}, "destination.root"),
        ({"type": "folder", "folder": "exports", "root": str(tmp_path), "bucket": "b"}, "destination.bucket"),
    ]:
        answer = call(ctx, "integrations_create", integration_body(destination), account=ACCOUNT)
        assert answer.status == 400 and answer.body["error"]["field"] == field, (destination, answer.body)
    assert call(ctx, "integrations_list", None, account=ACCOUNT).body["integrations"] == [], "nothing half-stored"


def test_an_export_into_a_registered_type_delivers_each_window_exactly_once(folder, request, ctx, clock, tag):
    kit = make_kit(request, "folder", tag)
    assert isinstance(kit, TargetKit), "its kit comes from its registration's local tools"
    request.addfinalizer(kit.target.stop)
    folder_destination.COMMITS.clear()

    iid = behind(ctx, clock, kit, 3, skip={1})  # created through the API; window 2 has no events
    shown = call(ctx, "integrations_show", None, account=ACCOUNT, id=iid).body
    assert shown["destination"]["folder"] == kit.body()["folder"]
    assert shown["destination"]["root"] != kit.body()["root"], "the root is shown masked"

    worked = tick(ctx)
    assert worked["worker"]["windows_exported"] == 3
    contents = assert_exactly_once(ctx, kit, iid)
    assert len(contents) == 3 and len(kit.names()) == 3
    assert len(folder_destination.COMMITS) == len(set(folder_destination.COMMITS)) == 3, "each file committed once"

    again = tick(ctx)  # nothing is due: the same files, none committed again
    assert again["worker"]["windows_exported"] == 0
    assert assert_exactly_once(ctx, kit, iid) == contents
    assert len(folder_destination.COMMITS) == 3


def test_a_kind_without_a_label_for_a_field_is_refused_at_once():
    with pytest.raises(ValueError, match="no label for root"):
        DestinationKind(**{**vars(folder_destination.KIND), "form": Form("A Local Folder", {"folder": "Folder"})})
    assert "folder" not in DESTINATION_KINDS
