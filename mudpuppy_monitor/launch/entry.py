"""`mudpuppy-monitor run`: start the command first, then everything else.

`main_fast` is what `mudpuppy-monitor run ...` calls before any parser is built. Before the fork
this imports only what start.py does plus `_signal`, `errno` and `ctypes` (spawn.py, signals.py,
lifetime.py); the writer, the tee, the daemon or terminal view alongside and everything else are
imported while the command starts up (`job.supervise`). docs/launch.md, "Start-up".
"""

from __future__ import annotations

import os
import sys

from mudpuppy_monitor.errors import UsageError
from mudpuppy_monitor.launch.start import (
    HANDOFF_FILE,
    LaunchSettings,
    NotSimple,
    Started,
    child_environment,
    claim_run_dir,
    make_root,
    parse_fast,
    say,
    scratch_dir,
    settings_from,
)


def launch(settings: LaunchSettings) -> int:
    """Start the command now, then supervise it (see job.py); returns run's exit status."""
    import _signal  # not `signal`: see signals.py

    from mudpuppy_monitor.launch.lifetime import die_with_parent
    from mudpuppy_monitor.launch.signals import StopSignals
    from mudpuppy_monitor.launch.spawn import CommandNotRunnable, spawn

    root = make_root(str(settings.root))
    signals = StopSignals()  # before any thread exists, so that every thread blocks them
    scratch = scratch_dir()
    run_dir = claim_run_dir(root, settings.name)
    handoff = os.path.join(scratch, HANDOFF_FILE)
    env = child_environment(settings, attach=run_dir is not None, handoff=handoff)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pdeathsig = die_with_parent(_signal.SIGTERM)

    def child_setup() -> None:
        signals.restore_in_child()
        if pdeathsig is not None:
            pdeathsig()

    try:
        pid = spawn(settings.command, env, out_w, err_w, child_setup)
    except CommandNotRunnable as exc:
        for fd in (out_r, out_w, err_r, err_w):
            os.close(fd)
        if run_dir is not None:
            os.rmdir(run_dir)
        os.rmdir(scratch)
        say(str(exc))
        return exc.exit_code
    os.close(out_w)
    os.close(err_w)
    from mudpuppy_monitor.launch.job import supervise

    started = Started(pid, out_r, err_r, root, run_dir, scratch, handoff)
    return supervise(settings, started, signals)


def main_fast(argv: list[str]) -> int | None:
    """`run` from the command line without building the full parser; None when the arguments
    need it (help, abbreviations, mistakes argparse explains)."""
    try:
        opts = parse_fast(argv)
    except NotSimple:
        return None
    try:
        return launch(settings_from(opts))
    except UsageError as exc:
        print(f"mudpuppy-monitor: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
