"""Startup hook of `mudpuppy-monitor run`, found first on the job's PYTHONPATH.

This directory holds only this file, so that putting it on PYTHONPATH shadows nothing else. At
interpreter startup `site` imports it; it then

1. takes its own directory off `sys.path` again (PYTHONPATH keeps it for the job's children),
2. loads the hook (`mudpuppy_monitor/launch/hook.py`, by the path the launcher gives) and
   installs it: nothing heavy is imported here,
3. runs the `sitecustomize` it shadows, if there is one, as `site` would have.

It never raises for itself: a hook that cannot load leaves the job running unmonitored.
"""


def _boot() -> None:
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if not p or os.path.abspath(p) != here]
    try:
        import importlib.util

        path = os.environ.get("MUDPUPPY_LAUNCH_HOOK")
        if path and os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("_mudpuppy_launch_hook", path)
            if spec is not None and spec.loader is not None:
                hook = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = hook
                spec.loader.exec_module(hook)
                hook.install()
    except Exception as exc:
        sys.stderr.write(f"mudpuppy-monitor: startup hook not loaded ({exc!r})\n")
    _chain()


def _chain() -> None:
    # The sitecustomize this one shadows: the next on sys.path. Its errors are reported by
    # `site` exactly as without us (importlib keeps whatever module sys.modules holds at the end).
    import importlib.machinery
    import importlib.util
    import sys

    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", sys.path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_boot()
