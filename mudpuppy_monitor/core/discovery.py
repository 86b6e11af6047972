"""Finding runs under a root: directories up to 4 levels deep that hold a run's files.

- native: `meta.json` or `events.jsonl`;
- llamafactory: `trainer_log.jsonl`;
- hf-trainer-state: `trainer_state.json`, at the top or in a `checkpoint-*/` subdirectory.

A directory that is a run is not searched further (an HF output dir's checkpoints belong to it).
Directory symlinks are never followed (no loops, no escape from the root); hidden directories are
skipped. An unreadable directory is skipped (and reported to the caller, which tells the user
once); the next pass tries again.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from mudpuppy_callback import EVENTS_FILE, META_FILE

from mudpuppy_monitor.core.sources import HF_TRAINER_STATE, LLAMAFACTORY, NATIVE

MAX_DEPTH = 4
TRAINER_STATE = "trainer_state.json"
TRAINER_LOG = "trainer_log.jsonl"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class Found:
    id: str
    path: str
    source: str
    dir_key: tuple[int, int]  # (st_dev, st_ino) of the directory: a recreated dir is a new run


def classify(names: set[str], checkpoint_states: bool) -> str | None:
    if META_FILE in names or EVENTS_FILE in names:
        return NATIVE
    if TRAINER_LOG in names:
        return LLAMAFACTORY
    if TRAINER_STATE in names or checkpoint_states:
        return HF_TRAINER_STATE
    return None


def _scan_dir(
    path: str, unreadable: set[str] | None = None
) -> tuple[set[str], list[tuple[str, str]], bool] | None:
    """(file names, subdirectories (name, path), has checkpoint-*/trainer_state.json); None when
    the directory cannot be listed (added to `unreadable` unless it has just disappeared)."""
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
    has_ckpt = any(
        CHECKPOINT_RE.match(name) and os.path.isfile(os.path.join(p, TRAINER_STATE))
        for name, p in dirs
    )
    return files, dirs, has_ckpt


def discover(
    root: str, root_name: str | None = None, unreadable: set[str] | None = None
) -> dict[str, Found]:
    """Every run under `root` (the root itself counts: its id is then its own name). Directories
    that could not be listed are added to `unreadable`."""
    found: dict[str, Found] = {}
    stack: list[tuple[str, str, int]] = [(root, "", 0)]
    while stack:
        path, rel, depth = stack.pop()
        scanned = _scan_dir(path, unreadable)
        if scanned is None:
            continue
        files, dirs, has_ckpt = scanned
        source = classify(files, has_ckpt)
        if source is not None:
            run_id = rel or (root_name or os.path.basename(root.rstrip(os.sep)) or "run")
            try:
                st = os.stat(path)
            except OSError:
                continue
            found[run_id] = Found(run_id, path, source, (st.st_dev, st.st_ino))
            continue
        if depth >= MAX_DEPTH:
            continue
        for name, sub in dirs:
            stack.append((sub, f"{rel}/{name}" if rel else name, depth + 1))
    return found
