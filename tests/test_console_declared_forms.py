"""A destination type's console form and its history's secrets come from its declaration alone: a type the
code base has never heard of (tests/folder_destination.py, and a variant of it with a keyless form) gets the
right fields, ways and required marks, and its secret field is only ever said to have changed in the history."""

from __future__ import annotations

import dataclasses
import json

import pytest

from exporter.console.fields import KEY, KEYLESS, auth_methods, fields_of, key_fields, keyless_fields
from exporter.destinations import register, unregister
from exporter.destinations.common import DestinationKind, Form, mask_middle
from exporter.errors import InputError
from exporter.integrations.changelog import secret_fields
from tests import folder_destination
from tests.destination_helpers import integration_body
from tests.helpers import call


@pytest.fixture
def folder():
    register(folder_destination.KIND)
    yield folder_destination.KIND
    unregister(folder_destination.KIND.name)


def shared_folder(optional_keyless: bool) -> DestinationKind:
    """The folder type with two ways: a secret root (the key), or a share name (keyless), not both."""

    def either(checked: dict, partial: bool) -> None:
        if checked.get("root") is not None and checked.get("share") is not None:
            raise InputError("and root exclude each other", field="destination.share")
        if not partial and not optional_keyless and checked.get("root") is None and checked.get("share") is None:
            raise InputError("is required", field="destination.share")

    return dataclasses.replace(
        folder_destination.KIND,
        name="shared_folder",
        credential_checks={**folder_destination.KIND.credential_checks, "share": folder_destination.check_folder},
        required=("folder",),
        check_together=either,
        credential_forms=(frozenset({"root"}), frozenset({"share"})),
        form=Form(
            "A Shared Folder",
            {"folder": "Folder Name", "root": "Root Directory", "share": "Share Name"},
            secret=frozenset({"root"}),
        ),
    )


def test_a_type_without_forms_has_its_key_form_only(folder):
    assert auth_methods(folder) == (KEY,) and key_fields(folder) == {"root"} and keyless_fields(folder) == set()
    fields = {f.name: f.required for f in fields_of(folder, KEY)}
    assert fields == {"root": True, "folder": True, "prefix": False}


@pytest.mark.parametrize("optional", [False, True], ids=["keyless field required", "keyless field optional"])
def test_a_type_declaring_a_keyless_form_offers_it_first(optional):
    kind = shared_folder(optional)
    assert auth_methods(kind) == (KEYLESS, KEY)
    assert key_fields(kind) == {"root"} and keyless_fields(kind) == {"share"}
    keyless = [(f.name, f.required, f.secret) for f in fields_of(kind, KEYLESS)]
    assert (
        keyless == [("share", True, False), ("folder", True, False), ("prefix", False, False)]
        if not optional
        else [
            ("folder", True, False),
            ("share", False, False),
            ("prefix", False, False),
        ]
    )
    key = [(f.name, f.required, f.secret) for f in fields_of(kind, KEY)]
    assert key == [("root", True, True), ("folder", True, False), ("prefix", False, False)]


def test_a_new_types_secret_field_is_only_said_to_have_changed_in_the_history(folder, ctx, tmp_path):
    roots = []
    for name in ("first-root", "second-root"):
        (tmp_path / name / "exports").mkdir(parents=True)
        roots.append(str(tmp_path / name))
    body = integration_body({"type": "folder", "folder": "exports", "root": roots[0], "prefix": ""})
    created = call(ctx, "integrations_create", body, account="acme")
    assert created.status == 201, created.body
    iid = created.body["id"]
    integration = ctx.repo.get("acme", iid)
    assert secret_fields(integration) == {"root"}
    updated = call(ctx, "integrations_update", {"destination": {"root": roots[1]}}, account="acme", id=iid)
    assert updated.status == 200, updated.body
    entries = call(ctx, "integrations_history", account="acme", id=iid).body["history"]
    assert [e["action"] for e in entries] == ["updated", "created"]
    assert entries[0]["changes"] == [{"field": "destination.root", "changed": True}]
    assert {"field": "destination.root", "changed": True} in entries[1]["changes"]
    text = json.dumps(entries)
    for root in roots:
        assert root not in text and mask_middle(root) not in text, "neither the root nor its masked form"
