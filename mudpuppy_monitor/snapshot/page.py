"""The snapshot page: the dashboard's own index.html with its stylesheets and scripts inlined and
the data embedded, so one file opens from disk with no server and no network.

The scripts are the dashboard's modules (bundle.py) behind `offline.js`, which answers the
dashboard's HTTP and WebSocket API from the embedded data; the charts, table, grouping, legend
and LoRA heatmap are the live page's own code. A Content-Security-Policy in the page forbids
every load and connection, so nothing can leave it even by mistake.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mudpuppy_monitor.snapshot.bundle import bundle

ENTRIES = ("offline.js", "app.js")
DATA_ID = "mudpuppy-snapshot"
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; connect-src 'none'; font-src 'none'; base-uri 'none'; form-action 'none'"
)
_STYLESHEET = re.compile(r'<link rel="stylesheet" href="(?P<href>[A-Za-z0-9_-]+\.css)">')
# an icon the page would fetch (the dashboard's own is a data: URI, which the snapshot keeps)
_ICON = re.compile(r'<link rel="icon" href="(?!data:)[^"]*"[^>]*>')
_SCRIPT = re.compile(r'<script type="module" src="app\.js"></script>')
_BODY = re.compile(r'<body class="')
_TITLE = re.compile(r"<title>[^<]*</title>")
_DATA_MARK = "\x00DATA\x00"


class PageError(ValueError):
    """index.html or a stylesheet is not what the snapshot knows how to inline."""


class PageTemplate:
    """index.html made self-contained, with a hole for the data. Build once, fill many times."""

    def __init__(self, web_dir: Path) -> None:
        html = (web_dir / "index.html").read_text(encoding="utf-8")

        def style(m: re.Match[str]) -> str:
            css = (web_dir / m.group("href")).read_text(encoding="utf-8")
            if re.search(r"url\((?!\s*['\"]?data:)|@import", css):
                raise PageError(f"{m.group('href')} loads a resource; a snapshot cannot carry it")
            return f"<style>\n{css}</style>"

        html, n_styles = _STYLESHEET.subn(style, html)
        html, n_icons = _ICON.subn('<link rel="icon" href="data:,">', html)
        script = bundle(web_dir, ENTRIES)
        html, n_scripts = _SCRIPT.subn(
            lambda _m: (
                f'<script type="application/json" id="{DATA_ID}">{_DATA_MARK}</script>\n'
                f'<script type="module">\n{script}\n</script>'
            ),
            html,
        )
        html, n_body = _BODY.subn('<body class="snapshot ', html)
        html = _TITLE.sub("<title>mudpuppy-monitor snapshot</title>", html, count=1)
        if not (n_styles and n_scripts == 1 and n_body == 1):
            raise PageError(
                "index.html changed shape: expected stylesheet links, one module script "
                "app.js and a body with a class"
            )
        del n_icons  # an icon is optional
        html = html.replace(
            '<meta charset="utf-8">',
            f'<meta charset="utf-8">\n<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            1,
        )
        self.head, self.tail = html.split(_DATA_MARK)

    @property
    def fixed_bytes(self) -> int:
        return len(self.head.encode("utf-8")) + len(self.tail.encode("utf-8"))

    def fill(self, data_json: str) -> str:
        # inside <script>: no "</script>" and no "<!--" may appear; \u003c is "<" in JSON
        return self.head + data_json.replace("<", "\\u003c") + self.tail


def read_data(html: str) -> dict[str, Any]:
    """The document a snapshot page embeds (the inverse of `PageTemplate.fill`)."""
    start = html.find(f'<script type="application/json" id="{DATA_ID}">')
    if start < 0:
        raise PageError("not a snapshot: no embedded data")
    start = html.index(">", start) + 1
    end = html.index("</script>", start)
    doc: dict[str, Any] = json.loads(html[start:end])
    return doc
