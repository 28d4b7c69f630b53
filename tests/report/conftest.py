"""Run directories the report tests share: made once per module by the real CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from onybench.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()

# Two models, failures of two kinds, a cost, a secret header value: fast.
SECRET_HEADER_VALUE = "hdr-SECRET-value-42"
MIXED_SCENARIO = """
name = "mixed"
[target]
base_url = "mock"
headers = { "X-Team-Token" = "hdr-SECRET-value-42" }
[request]
models = ["a/one", "b/two"]
max_tokens = 8
[load]
concurrency = 4
requests = 24
[mock]
ttft_ms = 2.0
itl_ms = 1.0
output_tokens = 6
http_500_rate = 0.1
stream_error_rate = 0.1
seed = 7
"""


def run_cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="session")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-model run with errors and cost; copy it before changing it."""
    base = tmp_path_factory.mktemp("mixed")
    scenario = base / "mixed.toml"
    scenario.write_text(MIXED_SCENARIO)
    out = base / "run"
    run_cli("run", str(scenario), "--out", str(out))
    return out


@pytest.fixture
def mixed_copy(mixed_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "mixed"
    shutil.copytree(mixed_run, copy)
    return copy


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's quickstart, as shipped."""
    out = tmp_path_factory.mktemp("quickstart") / "run"
    run_cli("run", str(REPO / "scenarios" / "quickstart.toml"), "--out", str(out))
    return out
