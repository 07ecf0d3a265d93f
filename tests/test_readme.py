"""The README's two commands and .ci/run stay in step, and the main job runs as written."""

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


@pytest.mark.slow
def test_main_job_learns_to_attend_along_the_anti_diagonal():
    """The main job's command after its install step, as the README gives it."""
    main_command = readme_commands()[0]
    script = main_command.split(" && ")[-1].split()
    assert script[0] == "python"
    result = subprocess.run(
        [sys.executable, *script[1:], "--steps", "300"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    accuracy = float(
        re.search(r"word accuracy on 1000 random sentences: ([\d.]+)%", result.stdout)[1]
    )
    assert accuracy > 95
    table = result.stdout.split("column: input word)\n")[1].splitlines()[1:]
    assert len(table) == 8
    for i, row in enumerate(table):
        weights = [float(w) for w in row.split()[3:]]
        assert max(range(8), key=weights.__getitem__) == 7 - i, row
