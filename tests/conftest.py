from __future__ import annotations

import socket
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    """Real training logs from public projects (see fixtures/README.md)."""
    return FIXTURES


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def free_port() -> int:
    return find_free_port()


@pytest.fixture(scope="module")
def browser():
    """One headless chromium per test module (see tests/browser.py)."""
    from tests.browser import launched

    with launched() as b:
        yield b


def copy_fixture_runs(root: Path) -> Path:
    """A runs root holding one HF trainer_state run and one LLaMA-Factory run from FIXTURES."""
    import shutil

    (root / "hf-run").mkdir(parents=True)
    shutil.copy(
        FIXTURES / "trainer_state" / "causal_lm_full_ft_with_eval_loss.json",
        root / "hf-run" / "trainer_state.json",
    )
    (root / "lf-run").mkdir()
    shutil.copy(
        FIXTURES / "llamafactory" / "qwen_medical_lr_with_eval.jsonl",
        root / "lf-run" / "trainer_log.jsonl",
    )
    return root
