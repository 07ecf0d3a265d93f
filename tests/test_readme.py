"""The README's two commands and .ci/run stay in step, and the main job runs as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_command():
    main_command, test_command = readme_commands()[:2]
    assert main_command.startswith("pip install torch==2.13.0 && ")
    assert test_command.startswith("pip install torch==2.13.0 && ") and "pytest" in test_command
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_every_readme_command_names_the_test_that_runs_it():
    """Each bash block of the README is preceded by `<!-- tested by FILE::TEST, ... -->` naming
    tests that run its commands (or `<!-- run by .ci/run -->`), and those tests exist."""
    readme = (ROOT / "README.md").read_text()
    blocks = list(re.finditer(r"(?:<!-- ([^\n]+?) -->\n)?```bash\n(.+?)\n```", readme, flags=re.S))
    assert len(blocks) == len(readme_commands())
    for block in blocks:
        marker, commands = block.group(1), block.group(2)
        assert marker, f"no <!-- tested by ... --> before:\n{commands}"
        if marker == "run by .ci/run":
            assert commands in (ROOT / ".ci" / "run").read_text()
            continue
        assert marker.startswith("tested by "), marker
        for test_id in re.findall(r"(tests/\w+\.py)::(\w+)", marker):
            file, name = test_id
            assert f"def {name}(" in (ROOT / file).read_text(), f"{file}::{name} does not exist"
        assert re.search(r"tests/\w+\.py::\w+", marker), marker


@pytest.mark.slow
def test_main_job_runs_as_written_and_learns(tmp_path):
    """The README's main job as written after its install step, in a fresh folder and process,
    cut to 60 of its 424 steps (the whole run takes minutes; the README gives its numbers): it
    learns, prints its samples, and writes the model, the plots and the model card, with nothing
    installed but the README's install (matplotlib is a dependency) and no warning about pinned
    memory on a CPU-only machine."""
    script = readme_commands()[0].split(" && ")[-1].split()
    assert script[:2] == ["python", "examples/pretrain_gpt.py"]
    result = subprocess.run(
        [sys.executable, str(ROOT / script[1]), *script[2:], "--max_steps", "60"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=3600,  # a hang guard only
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-5000:]
    perplexity = float(re.search(r"perplexity\s+=\s+([\d.]+)", result.stdout)[1])
    assert perplexity < 1000  # uniform over the 4096-token vocabulary would be 4096
    assert result.stdout.count("--- ") == 3
    assert "pin_memory" not in result.stderr and "skipped" not in result.stdout
    output_dir = tmp_path / "outputs" / "gpt-pydoc"
    assert (output_dir / "model.safetensors").exists()
    for picture in ("training_curves", "attention_self_attention_causal"):
        assert (output_dir / "plots" / f"{picture}.png").read_bytes().startswith(b"\x89PNG")
    card = (output_dir / "README.md").read_text()
    assert "GPT, a decoder-only language model" in card and "| perplexity |" in card
    assert "(plots/training_curves.png)" in card


@pytest.mark.slow
def test_attention_demo_attends_along_the_anti_diagonal():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "attention_demo.py"), "--steps", "300"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    accuracy = float(re.search(r"accuracy on 1000 random sentences: ([\d.]+)%", result.stdout)[1])
    assert accuracy > 95
    table = result.stdout.split("column: input word)\n")[1].splitlines()[1:]
    assert len(table) == 8
    for i, row in enumerate(table):
        weights = [float(w) for w in row.split()[3:]]
        assert max(range(8), key=weights.__getitem__) == 7 - i, row
