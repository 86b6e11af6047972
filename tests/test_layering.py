"""The package's import rules, read from the source with `ast` (every import statement, also
those inside functions and `if TYPE_CHECKING:` blocks):

- no import cycle between modules, nor between areas (a subpackage, or a top-level module);
- `core` and `gpu` import nothing from `server`, `tui`, `notify` or the commands (`cli`, `demo`);
- `notify` imports nothing from `core`, `server`, `tui` or the commands: it reads runs through a
  protocol of its own.

The checker is tried on a small package made up for the purpose, so it is shown to fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mudpuppy_monitor"
# area -> the areas it must not import
FORBIDDEN = {
    "core": ("server", "tui", "notify", "cli", "demo"),
    "gpu": ("server", "tui", "notify", "cli", "demo"),
    "notify": ("core", "server", "tui", "cli", "demo"),
}

Graph = dict[str, set[str]]


def module_names(package: Path) -> dict[str, Path]:
    """{dotted module name: file}; a package is named by its directory (`a.b` for a/b/__init__)."""
    out: dict[str, Path] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str, known: Iterable[str]) -> str | None:
    """The longest known module that `name` is or lies in (`a.b.C` -> `a.b`)."""
    known = set(known)
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The known modules `module` imports, anywhere in its file."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, known)
                if target:
                    out.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                # `from pkg import sub` imports the submodule when there is one
                target = _resolve(f"{origin}.{alias.name}", known) or _resolve(origin, known)
                if target:
                    out.add(target)
    out.discard(module)
    return out


def import_graph(package: Path) -> Graph:
    names = module_names(package)
    known = set(names)
    return {m: imports_of(m, p, known) for m, p in names.items()}


def area(module: str) -> str:
    """`pkg.core.run` -> `core`; `pkg.cli` -> `cli`; the package itself -> its name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def area_graph(graph: Graph) -> Graph:
    out: Graph = {}
    for m, targets in graph.items():
        out.setdefault(area(m), set()).update(area(t) for t in targets if area(t) != area(m))
    return out


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def upward_imports(graph: Graph) -> list[tuple[str, str]]:
    """(importer, imported) where an area imports one it must not (FORBIDDEN)."""
    return sorted(
        (m, t)
        for m, targets in graph.items()
        for t in targets
        if area(t) in FORBIDDEN.get(area(m), ())
    )


def test_no_import_cycle_between_modules() -> None:
    graph = import_graph(PACKAGE)
    assert len(graph) > 40  # the whole package was read
    assert cycles(graph) == []


def test_no_import_cycle_between_subpackages() -> None:
    areas = area_graph(import_graph(PACKAGE))
    assert {"core", "gpu", "server", "tui", "cli"} <= set(areas)
    assert cycles(areas) == []


def test_core_gpu_and_notify_import_nothing_they_must_not() -> None:
    assert upward_imports(import_graph(PACKAGE)) == []


def test_the_checker_finds_cycles_and_upward_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    for d in ("core", "gpu", "tui"):
        (pkg / d).mkdir(parents=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text("class UsageError(Exception): ...\n")
    (pkg / "core" / "a.py").write_text("from pkg.core import b\n")
    (pkg / "core" / "b.py").write_text("def f():\n    from . import a\n")  # lazy, relative
    (pkg / "core" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.tui.view import V\n"
    )
    (pkg / "tui" / "view.py").write_text("import pkg.core.c\n")
    (pkg / "gpu" / "cmd.py").write_text("from ..cli import UsageError\n")
    graph = import_graph(pkg)
    assert graph["pkg.core.a"] == {"pkg.core.b"} and graph["pkg.core.b"] == {"pkg.core.a"}
    assert cycles(graph) == [["pkg.core.a", "pkg.core.b"], ["pkg.core.c", "pkg.tui.view"]]
    assert cycles(area_graph(graph)) == [["core", "tui"]]
    assert upward_imports(graph) == [("pkg.core.c", "pkg.tui.view"), ("pkg.gpu.cmd", "pkg.cli")]
