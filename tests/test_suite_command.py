"""CI runs exactly the README's test command (a faster or narrower one in CI would hide what a developer runs)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(\.venv/bin/python -m pytest [^#\n]*?)\s*#", readme, re.M)
    assert len(commands) == 1, "one test command in the README's first block"
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"^{re.escape(commands[0])} \|\| status=\$\?$", ci, re.M), commands[0]
    options = commands[0].split(" pytest ", 1)[1].split()
    assert not {"-m", "-k", "-x", "--lf"} & set(options), "the test command runs every test"
