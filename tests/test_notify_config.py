"""Settings files (`mudpuppy.toml`, `[tool.mudpuppy]`), their precedence under flags, and the
errors a bad one gives: one line naming the file and the key, never the URL's secret."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mudpuppy_monitor.config import ConfigError, ConfigFile, load_config
from mudpuppy_monitor.notify.config import NotifyFlags, notify_settings
from mudpuppy_monitor.notify.events import DEFAULT_RULES
from mudpuppy_monitor.notify.settings import Limits, NotifySettings, RuleSettings

SLACK = "https://hooks.slack.com/services/T01/B02/s3cretS3cretS3cret"
NTFY = "ntfy://ntfy.example.org/train-alerts"

FULL = f"""
stall_after = 900
dashboard_url = "http://gpu-box:5980"

[notify]
urls = ["{SLACK}"]
rules = {{ spike = false }}
cooldown = 300
max_per_run = 5
window = 1800
nonfinite_series = ["loss"]
eval_metric = "eval_accuracy"
eval_mode = "max"
eval_min_delta = 0.001
queue_size = 50
timeout = 5
max_attempts = 3

[[notify.channels]]
url = "{NTFY}"
rules = {{ completed = false, eval_improved = true }}
cooldown = 60

[[notify.channels]]
url = "https://example.com/hook"
kind = "discord"
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def settings_of(tmp_path: Path, text: str, flags: NotifyFlags | None = None) -> NotifySettings:
    return notify_settings(load_config(write(tmp_path / "mudpuppy.toml", text)), flags)


# -- finding and reading the file -----------------------------------------------------------------


def test_no_file_means_defaults(tmp_path: Path) -> None:
    config = load_config(search_dir=tmp_path)
    assert config == ConfigFile(None)
    s = notify_settings(config)
    assert s == NotifySettings() and not s.enabled


def test_found_in_the_directory_mudpuppy_toml_before_pyproject(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.mudpuppy]\nstall_after = 100\n")
    assert load_config(search_dir=tmp_path).table == {"stall_after": 100}
    write(tmp_path / "mudpuppy.toml", "stall_after = 200\n")
    found = load_config(search_dir=tmp_path)
    assert (found.path, found.table) == (tmp_path / "mudpuppy.toml", {"stall_after": 200})


def test_a_pyproject_without_the_table_is_not_a_config(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n[tool.ruff]\nline-length = 100\n")
    assert load_config(search_dir=tmp_path).path is None
    with pytest.raises(ConfigError, match=r"has no \[tool.mudpuppy\] table"):
        load_config(tmp_path / "pyproject.toml")


def test_explicit_pyproject_reads_the_tool_table(tmp_path: Path) -> None:
    path = write(
        tmp_path / "pyproject.toml", "[tool.mudpuppy.notify]\nurls = []\n[tool.other]\nx = 1\n"
    )
    config = load_config(path)
    assert config.table == {"notify": {"urls": []}}
    assert config.where.endswith("pyproject.toml [tool.mudpuppy]")


def test_explicit_file_of_any_name(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "alerts.toml", "stall_after = 5\n"))
    assert config.table == {"stall_after": 5}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("stall_after = \n", r"alerts.toml: not valid TOML: .*line 1"),
        ("[notify\n", "not valid TOML"),
        (
            "stal_after = 5\n",
            r"unknown key 'stal_after' \(known: stall_after, dashboard_url, notify\)",
        ),
    ],
)
def test_bad_files(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path / "alerts.toml", content))


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config .*nope.toml: no such file"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"x = '\xff\xfe'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def test_python_310_without_tomli_gets_a_clear_message(tmp_path: Path, monkeypatch) -> None:
    path = write(tmp_path / "mudpuppy.toml", "stall_after = 5\n")
    monkeypatch.setitem(sys.modules, "tomllib", None)  # as on 3.10: no tomllib
    monkeypatch.setitem(sys.modules, "tomli", None)
    with pytest.raises(
        ConfigError, match=r"needs Python 3.11\+ or the tomli package \(pip install tomli\)"
    ):
        load_config(path)


def test_python_310_with_tomli_uses_it(tmp_path: Path, monkeypatch) -> None:
    import tomllib

    path = write(tmp_path / "mudpuppy.toml", "stall_after = 5\n")
    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", tomllib)  # the same API under its other name
    assert load_config(path).table == {"stall_after": 5}


# -- notify settings ----------------------------------------------------------------------------


def test_a_full_file(tmp_path: Path) -> None:
    s = settings_of(tmp_path, FULL)
    assert s.rules == RuleSettings(
        stall_after_s=900.0,
        nonfinite_series=("loss",),
        eval_metric="eval_accuracy",
        eval_mode="max",
        eval_min_delta=0.001,
    )
    assert (s.dashboard_url, s.queue_size, s.timeout_s, s.max_attempts) == (
        "http://gpu-box:5980",
        50,
        5.0,
        3,
    )
    slack, ntfy, discord = s.channels
    shared = Limits(cooldown_s=300.0, max_per_run=5, window_s=1800.0)
    assert (slack.url, slack.kind, slack.rules, slack.limits) == (
        SLACK,
        None,
        DEFAULT_RULES - {"spike"},
        shared,
    )
    # a channel's switches apply over [notify] rules, its limits over [notify] limits
    assert ntfy.rules == (DEFAULT_RULES - {"spike", "completed"}) | {"eval_improved"}
    assert ntfy.limits == Limits(cooldown_s=60.0, max_per_run=5, window_s=1800.0)
    assert (discord.kind, discord.rules) == ("discord", DEFAULT_RULES - {"spike"})


def test_flags_win(tmp_path: Path) -> None:
    flags = NotifyFlags(
        notify=(NTFY, "https://example.org/other"),
        stall_after_s=60.0,
        dashboard_url="https://mon.example.org",
    )
    s = settings_of(tmp_path, FULL, flags)
    assert s.rules.stall_after_s == 60.0
    assert s.dashboard_url == "https://mon.example.org"
    # --notify replaces the file's list; a URL that the file also lists keeps its settings
    ntfy, other = s.channels
    assert ntfy.url == NTFY and "eval_improved" in ntfy.rules and ntfy.limits.cooldown_s == 60.0
    assert other.url == "https://example.org/other" and other.rules == DEFAULT_RULES - {"spike"}


def test_file_beats_the_default_dashboard_url(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "mudpuppy.toml", 'dashboard_url = "http://a:1"\n'))
    assert (
        notify_settings(config, default_dashboard_url="http://127.0.0.1:5980").dashboard_url
        == "http://a:1"
    )
    assert (
        notify_settings(None, default_dashboard_url="http://127.0.0.1:5980").dashboard_url
        == "http://127.0.0.1:5980"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[notify]\nrules = { spiek = true }\n",
            r"notify.rules.spiek: unknown rule \(known: completed, failed",
        ),
        ("[notify]\nrules = { spike = 'no' }\n", "notify.rules.spike must be true or false"),
        ("[notify]\ncooldown = -1\n", "notify.cooldown must be >= 0 seconds"),
        (
            "[notify]\ncooldown = 'soon'\n",
            "notify.cooldown must be a number of seconds, not 'soon'",
        ),
        ("[notify]\nmax_per_run = 0\n", "notify.max_per_run must be a whole number >= 1"),
        ("[notify]\nmax_per_run = true\n", "notify.max_per_run must be a whole number"),
        ("[notify]\nwindow = 0\n", "notify.window must be > 0 seconds"),
        ("stall_after = 0\n", "stall_after must be > 0 seconds"),
        ("stall_after = nan\n", "stall_after must be > 0 seconds"),
        ("notify = 3\n", "notify must be a table"),
        ("[notify]\nurl = 'x'\n", r"unknown key 'notify.url' \(known: urls, channels"),
        ("[notify]\nurls = 'https://x.org'\n", "notify.urls must be a list"),
        ("[notify]\nurls = [3]\n", r"notify.urls\[0\] must be a URL string"),
        ("[notify]\nchannels = { url = 'x' }\n", "notify.channels must be a list of tables"),
        ("[[notify.channels]]\nkind = 'slack'\n", r"notify.channels\[0\] has no url"),
        (
            "[[notify.channels]]\nurl = 'https://x.org'\nrule = {}\n",
            r"unknown key 'notify.channels\[0\].rule'",
        ),
        (
            "[[notify.channels]]\nurl = 'https://x.org'\nkind = 'teams'\n",
            "unknown notification kind 'teams'",
        ),
        ("[notify]\neval_metric = 'eval_accuracy'\n", "'eval_accuracy' needs notify.eval_mode"),
        ("[notify]\neval_mode = 'up'\n", "notify.eval_mode must be 'min' or 'max'"),
        ("[notify]\neval_min_delta = -0.1\n", "notify.eval_min_delta must be a number >= 0"),
        ("[notify]\nnonfinite_series = 'loss'\n", "notify.nonfinite_series must be a list"),
        (
            "dashboard_url = 'gpu-box:5980'\n",
            "dashboard_url must be an http:// or https:// address",
        ),
    ],
)
def test_bad_settings_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        settings_of(tmp_path, text)
    assert str(err.value).startswith(str(tmp_path / "mudpuppy.toml") + ": ")


def test_url_errors_never_show_the_secret(tmp_path: Path) -> None:
    text = '[notify]\nurls = ["https://hooks.slack.com/services/T/B/s3cretS3cret", "ftp://h/s3cretS3cret"]\n'
    with pytest.raises(ConfigError, match=r"notify.urls\[1\]: .*not ftp://") as err:
        settings_of(tmp_path, text)
    assert "s3cretS3cret" not in str(err.value)
    dup = f'[notify]\nurls = ["{SLACK}"]\n[[notify.channels]]\nurl = "{SLACK}"\n'
    with pytest.raises(ConfigError, match="channels 1 and 2 have the same URL") as err:
        settings_of(tmp_path, dup)
    assert "s3cret" not in str(err.value)


def test_bad_flags(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="command line: --stall-after must be > 0 seconds"):
        notify_settings(None, NotifyFlags(stall_after_s=-5))
    with pytest.raises(ConfigError, match="command line: --notify: .*must start with") as err:
        notify_settings(None, NotifyFlags(notify=("hooks.slack.com/services/s3cretS3cret",)))
    assert "s3cret" not in str(err.value)
    with pytest.raises(
        ConfigError, match="command line: notification channels 1 and 2 have the same URL"
    ):
        notify_settings(None, NotifyFlags(notify=(SLACK, SLACK)))


def test_too_many_channels(tmp_path: Path) -> None:
    urls = ", ".join(f'"https://x.org/{i}"' for i in range(33))
    with pytest.raises(ConfigError, match="more than 32 notification channels"):
        settings_of(tmp_path, f"[notify]\nurls = [{urls}]\n")
