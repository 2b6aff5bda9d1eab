"""The delivery audit (exporter/audit.py): the judgement without servers, then every destination type for real."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from exporter import api
from exporter.audit import Expected, Listing, compare
from exporter.clock import from_unix, iso
from exporter.jobs import schedule
from exporter.local.host import drain
from exporter.runs import RunRecord, RunStatus
from tests.destination_helpers import behind, destination_from_body
from tests.export_helpers import ACCOUNT

IID = "0123456789ab"
PREFIX = "insider/"


def record(start: int, end: int, data: bytes, status: RunStatus = RunStatus.EXPORTED) -> RunRecord:
    name = f"{PREFIX}{ACCOUNT}_events_{IID}_{start}_{end}.csv"
    sha = hashlib.sha256(data).hexdigest()
    return RunRecord(ACCOUNT, IID, start, end, name, status, rows=1, bytes=len(data), sha256=sha)


def judge(records, files: dict[str, bytes], until: int = 300, **bounds) -> list[tuple]:
    expected = Expected(tuple(records), PREFIX, ACCOUNT, IID, 0, until, **bounds)
    listing = Listing({p: len(d) for p, d in files.items()}, lambda p: hashlib.sha256(files[p]).hexdigest())
    result = compare(expected, listing)
    assert result.ok == (not result.problems)
    return [(p.kind, p.window, p.file) for p in result.problems]


CLEAN = [record(0, 100, b"a"), record(100, 200, b"bb"), record(200, 300, b"ccc")]
FILES = {r.file: d for r, d in zip(CLEAN, (b"a", b"bb", b"ccc"), strict=True)}


def test_a_clean_delivery_is_ok():
    assert judge(CLEAN, FILES) == []
    expected = Expected(tuple(CLEAN), PREFIX, ACCOUNT, IID, 0, 300)
    assert compare(expected, Listing(dict.fromkeys(FILES, 0), str)).to_json()["windows"] == 3


def test_missing_altered_and_extra_files_are_named():
    files = {**FILES, CLEAN[1].file: b"bX"}
    del files[CLEAN[0].file]
    stray = f"{PREFIX}{ACCOUNT}_events_{IID}_300_400.parquet"
    files[stray] = b"x"
    files[f"{PREFIX}other_events_{IID}_300_400.csv"] = b"not ours"
    files[f"{PREFIX}deeper/{ACCOUNT}_events_{IID}_300_400.csv"] = b"not directly under the prefix"
    assert judge(CLEAN, files) == [
        ("missing", (0, 100), CLEAN[0].file),
        ("altered", (100, 200), CLEAN[1].file),
        ("extra", (300, 400), stray),
    ]


def test_a_size_change_is_altered_even_without_a_recorded_sha256():
    unhashed = [dataclasses.replace(r, sha256="") for r in CLEAN]
    assert judge(unhashed, {**FILES, CLEAN[2].file: b"cccc"}) == [("altered", (200, 300), CLEAN[2].file)]


def test_edited_bounds_are_a_gap_or_an_overlap():
    shorter = [CLEAN[0], dataclasses.replace(CLEAN[1], window_end=150), CLEAN[2]]
    assert judge(shorter, FILES) == [("gap", (150, 200), None)]
    longer = [CLEAN[0], dataclasses.replace(CLEAN[1], window_end=250), CLEAN[2]]
    assert judge(longer, FILES) == [("overlap", (200, 250), CLEAN[2].file)]
    assert judge(CLEAN[1:], {p: FILES[p] for p in FILES if p != CLEAN[0].file}) == [("gap", (0, 100), None)]
    assert judge(CLEAN, FILES, until=400) == [("gap", (300, 400), None)], "short of last_success_end"


def test_windows_not_delivered_yet_and_other_files_are_not_problems():
    pending = record(300, 400, b"d", RunStatus.EXPORTING)  # its file may be committed before its advance
    files = {**FILES, pending.file: b"d", CLEAN[0].file + ".manifest.json": b"{}"}
    assert judge([*CLEAN, pending], files) == []


def test_from_and_to_bound_the_audit():
    files = {p: d for p, d in FILES.items() if p != CLEAN[0].file}
    assert judge(CLEAN, files, start=100) == [], "the missing first window is before --from"
    assert judge(CLEAN, files, end=100) == [("missing", (0, 100), CLEAN[0].file)]
    result = compare(
        Expected(tuple(CLEAN), PREFIX, ACCOUNT, IID, 0, 300, 100, 200), Listing(dict.fromkeys(files, 1), str)
    )
    assert result.windows == 1


# ------------------------------------------------------------------ every destination type, for real


def remove(kit, name: str) -> None:
    if kit.kind == "azure_blob":
        kit.container.delete_blob(name)
    elif kit.kind == "s3":
        kit.server.client().delete_object(Bucket=kit.bucket, Key=name)
    else:
        kit.emulator.client().bucket(kit.bucket).blob(name).delete()


def put(kit, name: str, data: bytes) -> None:
    destination = destination_from_body(kit.body())
    destination.stage_block(name, 0, data)
    destination.commit_blocks(name, 1)


def audit(ctx, iid: str, **query: str) -> dict:
    answer = api.handle(ctx, "integrations_audit", api.ApiRequest(params={"account": ACCOUNT, "id": iid}, query=query))
    assert answer.status == 200, answer.body
    return answer.body


def kinds(body: dict) -> list[str]:
    return [p["kind"] for p in body["problems"]]


def test_the_audit_reads_every_destination_type(ctx, clock, kit, monkeypatch):
    iid = behind(ctx, clock, kit, 3)
    schedule(ctx)
    drain(ctx)
    runs = sorted(ctx.runs.list(ACCOUNT, iid), key=lambda r: r.window_start)
    assert len(runs) == 3 and all(r.sha256 == hashlib.sha256(kit.read(r.file)).hexdigest() for r in runs)
    destination = destination_from_body(kit.body())
    monkeypatch.setattr(type(destination), "stage_block", lambda *a: pytest.fail("the audit wrote to the destination"))
    assert audit(ctx, iid) == {"ok": True, "windows": 3, "problems": []}

    first, middle = runs[0], runs[1]
    original = kit.read(middle.file)
    monkeypatch.undo()
    remove(kit, first.file)
    body = audit(ctx, iid)
    assert body["problems"] == [
        {"kind": "missing", "window": {"start": first.window_start, "end": first.window_end}, "file": first.file}
    ]

    changed = bytearray(original)
    changed[-2] ^= 1  # one byte, the same size
    put(kit, middle.file, bytes(changed))
    assert kinds(audit(ctx, iid)) == ["missing", "altered"]
    put(kit, middle.file, original)
    assert kinds(audit(ctx, iid)) == ["missing"]
    assert audit(ctx, iid, **{"from": _iso(middle.window_start)})["ok"], "the missing window is before --from"

    stray = middle.file.replace(f"_{middle.window_start}_", f"_{middle.window_start + 7}_")
    put(kit, stray, b"x")
    assert kinds(audit(ctx, iid, **{"from": _iso(middle.window_start)})) == ["extra"]
    remove(kit, stray)

    ctx.runs.put(dataclasses.replace(middle, window_end=middle.window_end - 60))
    assert kinds(audit(ctx, iid, **{"from": _iso(middle.window_start)})) == ["gap"]
    ctx.runs.put(dataclasses.replace(middle, window_end=middle.window_end + 60))
    assert kinds(audit(ctx, iid, **{"from": _iso(middle.window_start)})) == ["overlap"]


def _iso(unix: int) -> str:
    return iso(from_unix(unix))
