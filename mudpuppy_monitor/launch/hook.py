"""The startup hook of `mudpuppy-monitor run`: a MonitorCallback for every Trainer of the job.

`boot/sitecustomize.py` loads this file by its path into every Python process of the job (the
command and its children: `accelerate launch` and `torchrun` workers included) and calls
`install()`. Standard library only, and no import of the rest of this package: the job's Python
may be another environment in which only the training libraries are installed.

`install()` imports nothing heavy. It puts a finder on `sys.meta_path` that waits for
`transformers.trainer` to be imported and then wraps `Trainer.__init__`: every Trainer (and every
subclass: TRL's, ...) gets one injected MonitorCallback. At `on_train_begin`, on world rank 0:

- if the Trainer also has a MonitorCallback of its own, the injected one stays inert;
- else it records into the launcher's run directory when the launcher created one and no other
  Trainer of the job has claimed it yet, otherwise into `<root>/<name>` the way a MonitorCallback
  given that name would (resumed from a checkpoint: append to the existing run; else `-2`, ...).

Either way the directory the job's Trainer records into is reported to the launcher once, through
the hand-off file (created with `link`, so the first report wins), so that `output.log` and the
job's exit status go to the same run.
"""

from __future__ import annotations

import os
import sys

# Start-up cost counts in every process of the job: only os and sys at import (no json, no
# typing); the rest is imported when a Trainer module is.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The launcher's settings, one environment variable each (strings: nothing to parse at start-up).
ENV_ROOT = "MUDPUPPY_LAUNCH_ROOT"  # runs root (absolute); its presence turns the hook on
ENV_NAME = "MUDPUPPY_LAUNCH_NAME"  # the run name asked for
ENV_ATTACH = "MUDPUPPY_LAUNCH_ATTACH"  # "1": the launcher created <root>/<name> for this job
ENV_LORA_EVERY = "MUDPUPPY_LAUNCH_LORA_EVERY"  # LoRA norms every K steps, 0: off
ENV_HANDOFF = "MUDPUPPY_LAUNCH_HANDOFF"  # the file that tells the launcher the job's run
ENV_HOOK = "MUDPUPPY_LAUNCH_HOOK"  # this file, for boot/sitecustomize.py
ENV_CALLBACK = "MUDPUPPY_LAUNCH_CALLBACK"  # the launcher's mudpuppy_callback.py
TRAINER_MODULE = "transformers.trainer"
WRITER_MODULE = "mudpuppy_callback"
_PATCHED = "_mudpuppy_patched"
_INJECTED = "_mudpuppy_injected"


def _say(message: str) -> None:
    try:
        sys.stderr.write(f"mudpuppy-monitor: {message}\n")
        sys.stderr.flush()
    except Exception:
        pass


def read_settings(environ: Any = None) -> dict[str, Any] | None:
    """The launcher's settings from the environment, or None when absent or unusable."""
    env = os.environ if environ is None else environ
    root = env.get(ENV_ROOT)
    if root is None:
        return None
    name, handoff = env.get(ENV_NAME), env.get(ENV_HANDOFF)
    lora_every = env.get(ENV_LORA_EVERY, "50")
    if not (root and name and handoff and lora_every.isdigit()):
        _say("ignoring unusable MUDPUPPY_LAUNCH_* settings; this process is not monitored")
        return None
    return {
        "root": root,
        "name": name,
        "handoff": handoff,
        "attach": env.get(ENV_ATTACH) == "1",
        "lora_every": int(lora_every),
        "callback": env.get(ENV_CALLBACK),
    }


def install(environ: Any = None) -> bool:
    """Arrange for Trainers of this process to be monitored. Never raises; False when off."""
    try:
        settings = read_settings(environ)
        if settings is None:
            return False

        def on_load(module: Any) -> None:
            patch_trainer_module(module, settings)

        module = sys.modules.get(TRAINER_MODULE)
        if module is not None:
            on_load(module)
        elif not any(isinstance(f, PostImportFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, PostImportFinder(TRAINER_MODULE, on_load))
        return True
    except Exception as exc:  # the job runs unmonitored rather than not at all
        _say(f"startup hook failed ({exc!r}); this process is not monitored")
        return False


class _WrappedLoader:
    """A module loader that calls `after(module)` once the module has been executed."""

    def __init__(self, loader: Any, after: Any) -> None:
        self._loader = loader
        self._after = after

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        # the module keeps the loader it would have had without us
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        self._after(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class PostImportFinder:
    """A `sys.meta_path` entry that finds nothing itself: it lets the other finders find `name`
    and wraps the loader so that `on_load(module)` runs right after the module is executed. It
    removes itself then. Costs one string comparison per import until then."""

    def __init__(self, name: str, on_load: Any) -> None:
        self.name = name
        self.on_load = on_load

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        try:
            later = sys.meta_path[sys.meta_path.index(self) + 1 :]
        except ValueError:
            return None
        for finder in later:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _WrappedLoader(spec.loader, self._loaded)
                return spec
        return None

    def _loaded(self, module: Any) -> None:
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        try:
            self.on_load(module)
        except Exception as exc:
            _say(f"cannot attach to {self.name} ({exc!r}); this process is not monitored")


def patch_trainer_module(module: Any, settings: dict[str, Any]) -> None:
    """Wrap `module.Trainer.__init__` so that each new Trainer gets an injected callback."""
    import functools

    cls = getattr(module, "Trainer", None)
    if cls is None or getattr(cls.__init__, _PATCHED, False):
        return
    original = cls.__init__
    state: dict[str, Any] = {}  # the injected class, built on first use

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        try:
            attach(self, settings, state)
        except Exception as exc:
            _say(f"could not monitor this Trainer ({exc!r}); training goes on unmonitored")

    setattr(__init__, _PATCHED, True)
    cls.__init__ = __init__


def attach(trainer: Any, settings: dict[str, Any], state: dict[str, Any]) -> None:
    handler = getattr(trainer, "callback_handler", None)
    if handler is None or any(getattr(cb, _INJECTED, False) for cb in handler.callbacks):
        return  # a subclass's __init__ runs ours twice; one callback is enough
    if "class" not in state:
        state["class"] = injected_class(writer_module(settings.get("callback")))
    trainer.add_callback(state["class"](trainer, settings))


def writer_module(path: Any) -> Any:
    """`mudpuppy_callback`: the one this process imported, else the launcher's copy by path."""
    module = sys.modules.get(WRITER_MODULE)
    if module is not None:
        return module
    if isinstance(path, str) and os.path.isfile(path):
        import importlib.util

        spec = importlib.util.spec_from_file_location(WRITER_MODULE, path)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            sys.modules[WRITER_MODULE] = module  # so that the program's own import gets it too
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[WRITER_MODULE]
                raise
            return module
    import importlib

    return importlib.import_module(WRITER_MODULE)


def is_monitor(callback: Any) -> bool:
    """A MonitorCallback that was not injected, from any copy of the writer file."""
    if getattr(callback, _INJECTED, False):
        return False
    return any(c.__name__ == "_MonitorCallbackBase" for c in type(callback).__mro__)


def report(handoff: str, run_dir: Any) -> None:
    """Tell the launcher which directory holds the job's run; the first report wins."""
    if not handoff or run_dir is None:
        return
    tmp = f"{handoff}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(os.path.abspath(os.fspath(run_dir)))
        os.link(tmp, handoff)  # fails if a report exists: complete and first, or nothing
    except OSError:
        pass
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def claim_launch_dir(handoff: str, run_dir: str) -> bool:
    """Take the launcher's run directory for this Trainer, unless another one has."""
    if not os.path.isdir(run_dir) or os.path.exists(handoff):
        return False
    report(handoff, run_dir)
    try:
        with open(handoff, encoding="utf-8") as f:
            return f.read() == os.path.abspath(run_dir)
    except OSError:
        return False


def injected_class(writer: Any) -> type:
    import weakref

    base = writer.MonitorCallback

    class LaunchedMonitor(base):  # type: ignore[misc, valid-type]
        """The MonitorCallback `mudpuppy-monitor run` adds to a Trainer."""

        _mudpuppy_injected = True

        def __init__(self, trainer: Any, settings: dict[str, Any]) -> None:
            super().__init__(
                settings["root"], name=settings["name"], lora_every=settings["lora_every"]
            )
            self._trainer = weakref.ref(trainer)
            self._launch = settings
            self._other: Any = None  # the Trainer's own MonitorCallback, if it has one
            self._reported = False

        def _own_monitor(self) -> Any:
            trainer = self._trainer()
            handler = getattr(trainer, "callback_handler", None)
            for cb in getattr(handler, "callbacks", ()):
                if is_monitor(cb):
                    return cb
            return None

        def _report(self) -> None:
            source = self._other if self._other is not None else self
            run_dir = getattr(getattr(source, "writer", None), "dir", None)
            if run_dir is not None and not self._reported:
                self._reported = True
                report(self._launch["handoff"], run_dir)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not getattr(state, "is_world_process_zero", True):
                return
            first = self.writer is None and self._other is None
            try:
                if first:
                    self._other = self._own_monitor()
                    if self._other is None and self._launch.get("attach"):
                        run_dir = os.path.join(self.root, self.name)
                        # the launcher's directory, unless an earlier Trainer of the job took it
                        self.resume = (
                            True if claim_launch_dir(self._launch["handoff"], run_dir) else None
                        )
            except Exception as exc:
                _say(f"monitor set-up failed ({exc!r})")
            if self._other is None:
                super().on_train_begin(args, state, control, **kwargs)
            self._report()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            super().on_step_end(args, state, control, **kwargs)
            if not self._reported and getattr(state, "is_world_process_zero", True):
                self._report()  # the Trainer's own monitor may have started after this one

    return LaunchedMonitor
