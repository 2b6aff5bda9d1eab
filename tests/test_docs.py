"""The project's own docs: every invariant has its section, and every file they name exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [
    ROOT / "docs" / name for name in ("architecture.md", "invariants.md", "fleet.md", "benchmarks.md", "keyless.md")
]


def test_every_invariant_has_a_section_in_order_with_how_it_is_kept_and_proved():
    text = (ROOT / "docs" / "invariants.md").read_text()
    assert re.findall(r"^## (I\d) ", text, re.M) == [f"I{n}" for n in range(1, 9)]
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        assert "**Kept by**" in section and "**Proved by**" in section, section.splitlines()[0]


def test_every_file_the_docs_name_exists():
    for doc in DOCS:
        text = doc.read_text()
        tests = set(re.findall(r"\btest_[\w*]+\.py\b", text))  # a name, or a pattern such as test_ucd_*.py
        paths = set(re.findall(r"`((?:exporter|tests|scripts|infra)/[\w/.]*\w|function_app\.py)`", text))
        assert paths, doc.name
        for name in tests:
            assert list((ROOT / "tests").glob(name)), f"{doc.name}: no {name}"
        for path in paths:
            assert (ROOT / path).exists(), f"{doc.name}: {path}"


def test_the_readme_and_the_code_point_to_docs_not_to_a_file_outside_the_project():
    for path in [ROOT / "README.md", ROOT / "function_app.py", *DOCS, *(ROOT / "exporter").rglob("*.py")]:
        text = path.read_text()
        assert "../shared" not in text and "DESIGN.md" not in text, path.relative_to(ROOT)
    assert "docs/invariants.md" in (ROOT / "README.md").read_text()


def test_the_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.index("\n## ", 5)]
    for module in sorted((ROOT / "exporter").rglob("*.py")):
        if module.name in ("__init__.py", "__main__.py"):
            continue
        relative = module.relative_to(ROOT).as_posix()
        assert f"`{module.name}`" in layout or f"`{relative}`" in layout, f"README's Layout names no {relative}"
