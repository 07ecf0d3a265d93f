"""The README's benchmark commands run (`--smoke`: tiny sizes, every measurement once, in one
process; the numbers mean nothing), and within them our models, the references and CTranslate2
still agree: same generated tokens."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow
@pytest.mark.parametrize("benchmark", ["attention", "gpt", "bert", "transformer", "decode_floor"])
def test_benchmark_runs_and_both_models_agree(benchmark):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"bench_{benchmark}.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,  # a guard against hangs: each takes seconds
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-5000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(table) >= 4, result.stdout
    assert "TOKENS DIFFER" not in result.stdout
    if benchmark in ("gpt", "transformer"):
        assert "same tokens" in result.stdout
        assert "| CTranslate2 " in result.stdout  # a test extra: its tokens are checked too
