"""`pip install .` ships the daemon, the single-file callback and the dashboard."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"pip wheel failed: {proc.stderr[-2000:]}")
    (path,) = out.glob("mudpuppy_monitor-*.whl")
    return path


def test_wheel_holds_callback_daemon_and_dashboard(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mudpuppy_callback.py" in names
    assert "mudpuppy_monitor/cli.py" in names
    assert "mudpuppy_monitor/web/index.html" in names
    assert "mudpuppy_monitor/web/app.js" in names
    assert not any(n.startswith(("tests/", "bench/", "callback/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "mudpuppy-monitor = mudpuppy_monitor.cli:main"
        in zipfile.ZipFile(wheel).read(entry_points).decode()
    )


def test_installed_wheel_imports_and_finds_its_dashboard(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # -S: no site processing, so the editable checkout is not on the path; dependencies come
    # from this environment's site-packages, the package itself only from the installed wheel
    deps = sysconfig.get_paths()["purelib"]
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]];"
        "import mudpuppy_callback, mudpuppy_monitor;"
        "from mudpuppy_monitor.server.settings import default_web_dir;"
        "from mudpuppy_monitor.cli import main;"
        "print(mudpuppy_callback.__file__); print(mudpuppy_monitor.__file__);"
        "print(default_web_dir()); sys.exit(main(['--version']))"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code, str(target), deps],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    callback_file, package_file, web_dir, version = proc.stdout.split("\n")[:4]
    assert Path(callback_file).parent == target
    assert Path(package_file).parent == target / "mudpuppy_monitor"
    assert Path(web_dir) == target / "mudpuppy_monitor" / "web"
    assert (Path(web_dir) / "index.html").is_file()
    assert version.startswith("mudpuppy-monitor 0.1.0")
