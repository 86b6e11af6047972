"""The dashboard's ES modules as one classic-free inline module script, for a page opened from
disk: a `file://` page cannot load module files (Chromium refuses module scripts from a `null`
origin), so every module the entries need is wrapped in a function scope, in dependency order.

The dashboard's modules keep to a small, regular subset of module syntax, and this bundler
accepts exactly that and refuses anything else with the file and line, so a new form is noticed
rather than bundled wrongly:

    import { a, b as c } from "./x.js";          (one or several lines)
    export function f / export async function f / export class C / export const K

Each module becomes `const __mod_x = (() => { const { a, b: c } = __mod_y; ...; return { f, C, K }; })();`.
Bindings are copied once, which equals a live binding here because no module reassigns what it
exports (`export let` is refused).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

_IMPORT = re.compile(
    r'^import\s*\{(?P<names>[^}]*)\}\s*from\s*"\./(?P<file>[A-Za-z0-9_-]+\.js)";[ \t]*$',
    re.MULTILINE,
)
_EXPORT = re.compile(
    r"^export\s+(?:(?:async\s+)?function\s*\*?|class|const)\s+(?P<name>[A-Za-z_$][\w$]*)",
    re.MULTILINE,
)
_ANY_MODULE_SYNTAX = re.compile(r"^(?:import|export)\b", re.MULTILINE)
_NAME = re.compile(r"^[A-Za-z_$][\w$]*$")


class BundleError(ValueError):
    """A module uses syntax the bundler does not take, or the modules form a cycle."""


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _var(file: str) -> str:
    return "__mod_" + re.sub(r"\W", "_", file.removesuffix(".js"))


def _import_names(spec: str, where: str) -> list[tuple[str, str]]:
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        bits = part.split()
        if len(bits) == 1 and _NAME.match(bits[0]):
            out.append((bits[0], bits[0]))
        elif len(bits) == 3 and bits[1] == "as" and _NAME.match(bits[0]) and _NAME.match(bits[2]):
            out.append((bits[0], bits[2]))
        else:
            raise BundleError(f"{where}: cannot bundle the import {part!r}")
    return out


class _Module:
    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.imports: list[tuple[str, list[tuple[str, str]]]] = []
        handled: set[int] = set()
        for m in _IMPORT.finditer(text):
            handled.add(m.start())
            where = f"{file}:{_line_of(text, m.start())}"
            self.imports.append((m.group("file"), _import_names(m.group("names"), where)))
        self.exports: list[str] = []
        for m in _EXPORT.finditer(text):
            handled.add(m.start())
            self.exports.append(m.group("name"))
        for m in _ANY_MODULE_SYNTAX.finditer(text):
            if m.start() not in handled:
                line = text[m.start() : text.find("\n", m.start())]
                raise BundleError(
                    f"{file}:{_line_of(text, m.start())}: cannot bundle {line.strip()!r}"
                )
        body = _IMPORT.sub("", text)
        self.body = re.sub(r"^export\s+", "", body, flags=re.MULTILINE)

    def wrapped(self) -> str:
        lines = [f"// ---- {self.file}", f"const {_var(self.file)} = (() => {{"]
        for file, names in self.imports:
            binds = ", ".join(
                name if name == local else f"{name}: {local}" for name, local in names
            )
            lines.append(f"const {{ {binds} }} = {_var(file)};")
        lines.append(self.body.strip("\n"))
        lines.append(f"return {{ {', '.join(self.exports)} }};")
        lines.append("})();")
        return "\n".join(lines)


def bundle(web_dir: Path, entries: Iterable[str]) -> str:
    """One script holding `entries` (file names in web_dir) and everything they import, each
    module once, every module before those that import it, the entries in the order given."""
    modules: dict[str, _Module] = {}
    order: list[str] = []
    visiting: list[str] = []

    def visit(file: str) -> None:
        if file in modules and file not in visiting:
            return
        if file in visiting:
            cycle = " -> ".join(visiting[visiting.index(file) :] + [file])
            raise BundleError(f"import cycle: {cycle}")
        path = web_dir / file
        if not path.is_file():
            raise BundleError(f"module not found: {path}")
        visiting.append(file)
        mod = modules[file] = _Module(file, path.read_text(encoding="utf-8"))
        for dep, _names in mod.imports:
            visit(dep)
        visiting.pop()
        order.append(file)

    for entry in entries:
        visit(entry)
    for mod in modules.values():
        for dep, names in mod.imports:
            missing = [n for n, _ in names if n not in modules[dep].exports]
            if missing:
                raise BundleError(
                    f"{mod.file} imports {', '.join(missing)} that {dep} does not export"
                )
    text = "\n".join(modules[f].wrapped() for f in order)
    # inline in HTML: nothing may close the script element or open an HTML comment in it
    # (`<\/` and `<\!` mean the same inside JavaScript strings, regexes and comments)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")
