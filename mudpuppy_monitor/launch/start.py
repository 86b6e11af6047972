"""What `mudpuppy-monitor run` needs before its command starts, importing almost nothing.

Every job pays what runs before it is spawned (entry.py), so this module imports only `os`,
`sys` and `time`: the arguments read by hand in their usual forms (anything else goes to the
argparse parser in cli.py, which says what is wrong), their validation (shared by both parsers),
the run name, the child's environment, the run directory and a private temporary directory.
"""

from __future__ import annotations

import os
import sys
import time

from mudpuppy_monitor.errors import UsageError

# the hook's settings for the job's processes (hook.py, loaded by path in the job, keeps its own
# copy of these names: a test pins them together)
ENV_ROOT = "MUDPUPPY_LAUNCH_ROOT"
ENV_NAME = "MUDPUPPY_LAUNCH_NAME"
ENV_ATTACH = "MUDPUPPY_LAUNCH_ATTACH"
ENV_LORA_EVERY = "MUDPUPPY_LAUNCH_LORA_EVERY"
ENV_HANDOFF = "MUDPUPPY_LAUNCH_HANDOFF"
ENV_HOOK = "MUDPUPPY_LAUNCH_HOOK"
ENV_CALLBACK = "MUDPUPPY_LAUNCH_CALLBACK"
HANDOFF_FILE = "run-dir"
HERE = os.path.dirname(os.path.abspath(__file__))
BOOT_DIR = os.path.join(HERE, "boot")
DEFAULT_PORT = 5980  # as `serve`
VIEWS = ("serve", "tui")
# characters a run name must not hold (as the writer's _UNSAFE_NAME_CHARS, without a regex)
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class LaunchSettings:
    """What `run` was asked to do (validated)."""

    __slots__ = (
        "command",
        "root",
        "name",
        "lora_every",
        "log_max_bytes",
        "view",
        "port",
        "open_browser",
    )

    def __init__(
        self,
        command: tuple[str, ...],
        root: str | os.PathLike[str],
        name: str,
        lora_every: int = 50,
        log_max_bytes: int = 64 << 20,
        view: str | None = None,
        port: int = DEFAULT_PORT,
        open_browser: bool = False,
    ) -> None:
        self.command = tuple(command)
        self.root = root
        self.name = name
        self.lora_every = lora_every
        self.log_max_bytes = log_max_bytes
        self.view = view  # None, "serve" (the daemon alongside) or "tui" (the terminal view)
        self.port = port
        self.open_browser = open_browser


class Started:
    """What `entry.launch` made before the command started: the child, its pipes' read ends,
    the resolved root, the run directory it created (None: the name was taken), the scratch
    directory and the hand-off file in it."""

    __slots__ = ("pid", "stdout_fd", "stderr_fd", "root", "run_dir", "scratch", "handoff")

    def __init__(
        self,
        pid: int,
        stdout_fd: int,
        stderr_fd: int,
        root: str,
        run_dir: str | None,
        scratch: str,
        handoff: str,
    ) -> None:
        self.pid = pid
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self.root = root
        self.run_dir = run_dir
        self.scratch = scratch
        self.handoff = handoff


# -- arguments -------------------------------------------------------------------------------

_VALUED = {"--root": "root", "--name": "name", "--lora-every": "lora_every", "--port": "port"}
_FLAGS = {"--serve": "serve", "--tui": "tui", "--open": "open"}


class NotSimple(Exception):
    """Arguments in a form only argparse reads (or an error argparse explains best)."""


def parse_fast(argv: list[str]) -> dict[str, object]:
    """`run`'s arguments in their exact forms (`--opt VALUE`, `--opt=VALUE`, flags, then the
    command, after `--` or from its first word); raises NotSimple for anything else."""
    opts: dict[str, object] = {"root": "runs", "name": None, "lora_every": "50", "port": None}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-"):
            break
        key, eq, value = arg.partition("=")
        if key in _VALUED:
            if not eq:
                if i + 1 >= len(argv):
                    raise NotSimple(arg)
                i += 1
                value = argv[i]
            opts[_VALUED[key]] = value
        elif key in _FLAGS and not eq:
            opts[_FLAGS[key]] = True
        else:
            raise NotSimple(arg)  # -h, abbreviations, unknown options: argparse says
        i += 1
    opts["command"] = argv[i:]
    return opts


def settings_from(opts: dict[str, object]) -> LaunchSettings:
    """Validate parsed arguments (from either parser); a user error raises UsageError."""
    command = [str(c) for c in opts["command"]]  # type: ignore[attr-defined]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("nothing to run: give the command after --, e.g. run -- python train.py")
    lora_every = _int(opts.get("lora_every"), "--lora-every")
    if lora_every < 0:
        raise UsageError("--lora-every must be 0 (off) or a positive number of steps")
    serve, tui = bool(opts.get("serve")), bool(opts.get("tui"))
    if serve and tui:
        raise UsageError("--serve and --tui cannot be used together")
    if (opts.get("port") is not None or opts.get("open")) and not serve:
        raise UsageError("--port and --open go with --serve")
    port = DEFAULT_PORT if opts.get("port") is None else _int(opts["port"], "--port")
    if not 1 <= port <= 65535:
        raise UsageError(f"--port must be between 1 and 65535, not {port}")
    name = opts.get("name")
    name = default_name(command) if name is None else check_name(str(name))
    root = os.path.expanduser(str(opts.get("root") or "runs"))
    return LaunchSettings(
        command=tuple(command),
        root=root,
        name=name,
        lora_every=lora_every,
        view="serve" if serve else "tui" if tui else None,
        port=port,
        open_browser=bool(opts.get("open")),
    )


def _int(value: object, option: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise UsageError(f"{option} must be an integer, not {value!r}") from None


def check_name(name: str) -> str:
    """The writer's rule for a run name (a relative path without `..`), without importing it
    for the usual name; a name holding control or bidi characters goes to the writer, which
    cleans it and says so."""
    if any(c < " " or "\x7f" <= c <= "\x9f" or c in _BIDI for c in name):
        from mudpuppy_callback import _check_name

        try:
            return _check_name(name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    absolute = name.startswith(("/", "\\")) or os.path.isabs(name)
    name = name.replace("\\", "/").rstrip("/")
    if absolute or not name or any(p in ("", ".", "..") for p in name.split("/")):
        raise UsageError(f"invalid run name {name!r}: use a relative path without '..'")
    return name


def script_stem(command: list[str] | tuple[str, ...]) -> str:
    """What the command runs, as a name: the first `.py` or `.sh` argument's stem, else the module
    after `-m`, else the program's own name."""
    for arg in command:
        if arg.endswith((".py", ".sh")):
            return _stem(arg)
    for i, arg in enumerate(command[:-1]):
        if arg == "-m":
            return command[i + 1].rsplit(".", 1)[-1]
    return _stem(command[0])


def _stem(path: str) -> str:
    base = os.path.basename(path.rstrip("/"))
    dot = base.rfind(".")
    return base[:dot] if dot > 0 else base


def default_name(command: list[str] | tuple[str, ...], now: float | None = None) -> str:
    out: list[str] = []
    for c in script_stem(command):  # runs of other characters become one "-"
        ok = c.isascii() and (c.isalnum() or c in "._-")
        if ok:
            out.append(c)
        elif not out or out[-1] != "-":
            out.append("-")
    stem = "".join(out).strip("-.") or "run"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"


# -- the child -------------------------------------------------------------------------------


def callback_file() -> str:
    """The path of the writer module this launcher uses, found without importing it."""
    module = sys.modules.get("mudpuppy_callback")
    path: str | None = getattr(module, "__file__", None) if module is not None else None
    if path:
        return os.path.abspath(path)
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        spec = find("mudpuppy_callback", None) if find is not None else None
        if spec is not None and spec.origin:
            return os.path.abspath(spec.origin)
    raise RuntimeError("the mudpuppy_callback module is not installed with this package")


def child_environment(
    settings: LaunchSettings,
    *,
    attach: bool,
    handoff: str,
    environ: dict[str, str] | None = None,
) -> dict[str, str]:
    env = dict(os.environ if environ is None else environ)
    old = env.get("PYTHONPATH")
    # an empty entry would mean the current directory: only join a non-empty PYTHONPATH
    env["PYTHONPATH"] = f"{BOOT_DIR}{os.pathsep}{old}" if old else BOOT_DIR
    env["PYTHONUNBUFFERED"] = env.get("PYTHONUNBUFFERED") or "1"  # lines reach the log as printed
    env[ENV_ROOT] = os.path.abspath(os.path.realpath(settings.root))
    env[ENV_NAME] = settings.name
    env[ENV_ATTACH] = "1" if attach else "0"
    env[ENV_LORA_EVERY] = str(settings.lora_every)
    env[ENV_HANDOFF] = str(handoff)
    env[ENV_HOOK] = os.path.join(HERE, "hook.py")
    env[ENV_CALLBACK] = callback_file()
    return env


def say(message: str) -> None:
    print(f"mudpuppy-monitor: {message}", file=sys.stderr, flush=True)


def make_root(root: str) -> str:
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {root}: {exc.strerror or exc}") from None
    if not os.path.isdir(root):
        raise UsageError(f"{root} is not a directory")
    return os.path.realpath(root)


def claim_run_dir(root: str, name: str) -> str | None:
    """`<root>/<name>` created for this job, or None when the name is taken (the job's Trainer
    then decides: docs/launch.md)."""
    wanted = os.path.join(root, name)
    try:
        os.makedirs(os.path.dirname(wanted), exist_ok=True)
        os.mkdir(wanted)
    except FileExistsError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot create {wanted}: {exc.strerror or exc}") from None
    return wanted


def scratch_dir() -> str:
    """A private temporary directory (the hand-off file, output kept until a run is chosen)."""
    base = os.environ.get("TMPDIR") or "/tmp"
    for _ in range(100):
        path = os.path.join(base, f"mudpuppy-run-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(path)
