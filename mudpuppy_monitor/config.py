"""The settings file: `mudpuppy.toml`, or the `[tool.mudpuppy]` table of a `pyproject.toml`.

Found by `--config FILE`, or else looked for in the working directory (`mudpuppy.toml` first,
then a `pyproject.toml` that has a `[tool.mudpuppy]` table). Command-line flags win over the
file. Keys are checked here at the top level and by each part for its own table, so a typo is an
error that names the file and the key, never a setting silently ignored (docs/notifications.md,
"Configuration file").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAME = "mudpuppy.toml"
PYPROJECT = "pyproject.toml"
# the keys a settings file may hold at its top level
TOP_LEVEL_KEYS = ("stall_after", "dashboard_url", "notify")
MAX_CONFIG_BYTES = 1 << 20


class ConfigError(ValueError):
    """A settings file or flag that cannot be used: one line naming the file and the key."""


@dataclass(frozen=True)
class ConfigFile:
    path: Path | None  # None: no file (every setting at its default)
    table: dict[str, Any] = field(default_factory=dict)
    where: str = (
        "defaults"  # how messages name it: "mudpuppy.toml", "pyproject.toml [tool.mudpuppy]"
    )


def load_config(explicit: str | Path | None = None, search_dir: str | Path = ".") -> ConfigFile:
    """The settings file asked for with --config, else the one found in `search_dir`, else none."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"--config {path}: no such file")
        doc = read_toml(path)
        if path.name == PYPROJECT:
            table = _tool_table(doc)
            if table is None:
                raise ConfigError(f"{path}: has no [tool.mudpuppy] table")
            return _checked(ConfigFile(path, table, f"{path} [tool.mudpuppy]"))
        return _checked(ConfigFile(path, doc, str(path)))
    base = Path(search_dir)
    own = base / CONFIG_NAME
    if own.is_file():
        return _checked(ConfigFile(own, read_toml(own), str(own)))
    pyproject = base / PYPROJECT
    if pyproject.is_file():
        table = _tool_table(read_toml(pyproject))
        if table is not None:
            return _checked(ConfigFile(pyproject, table, f"{pyproject} [tool.mudpuppy]"))
    return ConfigFile(None)


def read_toml(path: Path) -> dict[str, Any]:
    toml = _toml_module(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than 1 MiB, not a settings file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        return dict(toml.loads(text))
    except toml.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _toml_module(path: Path) -> Any:
    try:
        import tomllib  # Python 3.11+

        return tomllib
    except ImportError:
        pass
    try:
        import tomli  # the same parser, installed separately on Python 3.10

        return tomli
    except ImportError:
        raise ConfigError(
            f"{path}: reading a settings file needs Python 3.11+ or the tomli package "
            "(pip install tomli)"
        ) from None


def _tool_table(doc: dict[str, Any]) -> dict[str, Any] | None:
    tool = doc.get("tool")
    table = tool.get("mudpuppy") if isinstance(tool, dict) else None
    return table if isinstance(table, dict) else None


def _checked(config: ConfigFile) -> ConfigFile:
    check_keys(config.table, TOP_LEVEL_KEYS, config.where, "")
    return config


# -- small validators shared by the parts that read their own tables ----------------------------


def check_keys(table: dict[str, Any], known: tuple[str, ...], where: str, prefix: str) -> None:
    for key in table:
        if key not in known:
            name = f"{prefix}{key}"
            raise ConfigError(f"{where}: unknown key {name!r} (known: {', '.join(known)})")


def as_seconds(value: Any, where: str, key: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number of seconds, not {_show(value)}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{where}: {key} must be {bound} seconds, not {value}")
    return float(value)


def as_count(value: Any, where: str, key: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: {key} must be a whole number >= {minimum}, not {_show(value)}")
    return value


def as_text(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string, not {_show(value)}")
    return value.strip()


def as_table(value: Any, where: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a table, not {_show(value)}")
    return value


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if len(value) <= 24 else "a string"
    if isinstance(value, (dict, list)):
        return "a table" if isinstance(value, dict) else "a list"
    return repr(value)
