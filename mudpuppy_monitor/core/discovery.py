"""Finding runs under a root: directories up to 4 levels deep that a source claims (see the
registry in `core/sources`: native `meta.json`/`events.jsonl`, LLaMA-Factory `trainer_log.jsonl`,
HF `trainer_state.json` at the top or in a `checkpoint-*/` subdirectory).

A directory that is a run is not searched further (an HF output dir's checkpoints belong to it).
Directory symlinks are never followed (no loops, no escape from the root); hidden directories are
skipped. An unreadable directory is skipped (and reported to the caller, which tells the user
once); the next pass tries again.
"""

from __future__ import annotations

import os
from collections.abc import Container
from dataclasses import dataclass

from mudpuppy_monitor.core.sources import Listing, classify

MAX_DEPTH = 4


@dataclass(frozen=True)
class Found:
    id: str
    path: str
    source: str
    dir_key: tuple[int, int]  # (st_dev, st_ino) of the directory: a recreated dir is a new run


def _scan_dir(path: str, unreadable: set[str] | None = None) -> Listing | None:
    """The directory's listing; None when it cannot be listed (added to `unreadable` unless it
    has just disappeared)."""
    files: set[str] = set()
    dirs: list[tuple[str, str]] = []
    try:
        with os.scandir(path) as it:
            for entry in it:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if not entry.name.startswith("."):
                            dirs.append((entry.name, entry.path))
                    else:
                        files.add(entry.name)
                except OSError:
                    continue
    except FileNotFoundError:
        return None
    except OSError:
        if unreadable is not None:
            unreadable.add(path)
        return None
    return Listing(path, frozenset(files), tuple(dirs))


def discover(
    root: str, root_name: str | None = None, unreadable: set[str] | None = None
) -> dict[str, Found]:
    """Every run under `root` (the root itself counts: its id is then its own name). Directories
    that could not be listed are added to `unreadable`."""
    found: dict[str, Found] = {}
    stack: list[tuple[str, str, int]] = [(root, "", 0)]
    while stack:
        path, rel, depth = stack.pop()
        listing = _scan_dir(path, unreadable)
        if listing is None:
            continue
        source = classify(listing)
        if source is not None:
            run_id = rel or (root_name or os.path.basename(root.rstrip(os.sep)) or "run")
            try:
                st = os.stat(path)
            except OSError:
                continue
            found[run_id] = Found(run_id, path, source.kind, (st.st_dev, st.st_ino))
            continue
        if depth >= MAX_DEPTH:
            continue
        for name, sub in listing.dirs:
            stack.append((sub, f"{rel}/{name}" if rel else name, depth + 1))
    return found


def run_of_path(
    path: str, root: str, real: str | None, runs: Container[str], root_run: str | None
) -> str | None:
    """The id of the known run (in `runs`) that a changed path belongs to: a new directory
    inside a run is part of it (checkpoints). `root_run` is the root's own id when the root is
    itself the run. None: a path of no known run (a full pass will look)."""
    if real is None:
        return None
    for base in (real, root):
        if path.startswith(base + os.sep):
            parts = path[len(base) + 1 :].split(os.sep)
            for k in range(min(len(parts), MAX_DEPTH + 1), 0, -1):
                run_id = "/".join(parts[:k])
                if run_id in runs:
                    return run_id
            return root_run
    if path in (real, root):
        return root_run
    return None
