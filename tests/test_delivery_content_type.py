"""Each file carries its own content type on every destination type: the format's, a manifest's JSON."""

from __future__ import annotations

import pytest

from exporter.export.formats import FORMATS, content_type_of
from tests.destination_helpers import destination_from_body

EXPECTED = {
    "insider/w.csv": "text/csv; charset=utf-8",
    "insider/w.csv.gz": "application/gzip",
    "insider/w.jsonl.gz": "application/gzip",
    "insider/w.parquet": "application/vnd.apache.parquet",
    "insider/w.parquet.manifest.json": "application/json",
}


def test_every_format_owns_its_content_type():
    assert {f.extension for f in FORMATS.values()} == {p.split(".", 1)[1] for p in EXPECTED if "manifest" not in p}
    assert {p: content_type_of(p) for p in EXPECTED} == EXPECTED


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_a_committed_file_has_its_content_type(kit, path):
    destination = destination_from_body(kit.body())
    destination.stage_block(path, 0, b"bytes")
    destination.commit_blocks(path, 1)
    assert kit.content_type(path) == EXPECTED[path]
