"""File names (pure): `{prefix}/{account}_events_{integration}_{start}_{end}.csv`, the prefix joined with
exactly one '/' (docs/architecture.md: the export file).
"""

from datetime import datetime, timedelta, timezone

import pytest

from exporter.export.naming import file_name, join_prefix, window_path
from exporter.windows import Window

ACTIVATED = datetime(2026, 11, 28, 10, 17, 23, tzinfo=timezone.utc)  # deliberately not a clock hour
H = timedelta(hours=1)


def test_file_name_is_the_documented_pure_function_of_integration_and_window():
    window = Window(ACTIVATED, ACTIVATED + H)
    start = int(ACTIVATED.timestamp())
    expected = f"acme_events_abc123_{start}_{start + 3600}.csv"
    assert file_name("acme", "abc123", window) == expected
    assert file_name("acme", "abc123", Window(ACTIVATED, ACTIVATED + H)) == expected, "same input, same name"
    assert window_path("", "acme", "abc123", window) == expected, "an empty prefix is the root"


@pytest.mark.parametrize(
    "prefix, joined",
    [
        ("", "NAME"),
        ("a", "a/NAME"),
        ("a/", "a/NAME"),
        ("/a/b/", "a/b/NAME"),
        ("a//", "a/NAME"),
    ],
)
def test_prefix_is_joined_with_exactly_one_slash(prefix, joined):
    window = Window(ACTIVATED, ACTIVATED + H)
    base = file_name("acme", "i1", window)
    name = window_path(prefix, "acme", "i1", window)
    assert name == joined.replace("NAME", base)
    assert "//" not in name and not name.startswith("/")
    if prefix.strip("/"):
        assert name.count("/") == prefix.strip("/").count("/") + 1
    else:
        assert "/" not in name
    assert join_prefix(prefix, base) == name
