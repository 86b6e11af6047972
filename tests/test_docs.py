"""The docs list the modules that exist and point only at documents that exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


def _code_block(text: str) -> str:
    return text.split("```")[1]


def listed_in_architecture() -> set[str]:
    """Paths of the module map in docs/architecture.md: a directory line, then its files
    (indented, several per line separated by ", "), each followed by its description."""
    out: set[str] = set()
    current = ""
    for line in _code_block((DOCS / "architecture.md").read_text()).splitlines():
        if not line.strip():
            continue
        names = re.split(r"\s{2,}", line.strip())[0]
        if not line.startswith(" "):
            if names.endswith("/"):
                current = names
            else:
                out.add(names)
            continue
        out.update(current + n for n in names.split(", "))
    return out


def test_architecture_lists_every_module() -> None:
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "mudpuppy_monitor").rglob("*.py")}
    listed = listed_in_architecture()
    assert modules - listed == set()  # every module is on the map
    assert {p for p in listed if p.endswith(".py")} - modules == {"callback/mudpuppy_callback.py"}


def test_core_md_lists_every_core_module() -> None:
    core = REPO / "mudpuppy_monitor"
    modules = {p.relative_to(core).as_posix() for p in (core / "core").rglob("*.py")}
    listed = set(re.findall(r"^(core/\S+\.py)", _code_block((DOCS / "core.md").read_text()), re.M))
    assert listed == modules


def test_dashboard_md_lists_every_web_file() -> None:
    text = (DOCS / "dashboard.md").read_text()
    table = text[text.index("| file | what |") :].split("\n\n")[0]
    listed = set(re.findall(r"`([\w.]+\.(?:js|css|html|svg))`", table))
    assert listed == {p.name for p in (REPO / "web").iterdir() if p.is_file()}


def test_docs_refer_only_to_documents_in_the_repository() -> None:
    for doc in [*DOCS.glob("*.md"), REPO / "README.md"]:
        text = doc.read_text()
        assert not re.search(r"\bDESIGN\b|API-NOTES|STYLE\.md|shared/", text), doc.name
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (doc.parent / target).exists(), f"{doc.name} links to {target}"
