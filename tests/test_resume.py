"""Faults lose nothing.

A training run killed with SIGKILL after it wrote a checkpoint, then resumed in a new process with
`--resume_from_checkpoint`, ends exactly where a run that was never interrupted ends: the same
weights (to 1e-6 on every tensor), the same per-step losses and gradient norms (the same batches in
the same order, the same dropout and MLM masks), the same evaluation; for the three workflows (GPT
pre-training, BERT pre-training with MLM + NSP, translation), with dropout on.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from safetensors.torch import load_file

from hf_scratch.data import pydoc_corpus
from hf_scratch.tokenization import train_wordpiece

# One thread: the same kernels on the same inputs give the same bits in every process.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# --------------------------------------------------------------------------------------------------
# Kill and resume
# --------------------------------------------------------------------------------------------------


# Runs an example script in this process, after making every Trainer it builds kill the process
# with SIGKILL as soon as its checkpoint at step KILL_STEP is complete (the Trainer calls `on_save`
# after writing the weights, optimizer, scheduler, RNG and trainer states): a fault at an exact
# point, whatever the machine's speed.
KILLED_AFTER_CHECKPOINT = """
import os, runpy, signal, sys
from transformers import Trainer, TrainerCallback

class KillAfterCheckpoint(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == int(os.environ["KILL_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)

build = Trainer.__init__
def __init__(self, *args, **kwargs):
    build(self, *args, **kwargs)
    self.add_callback(KillAfterCheckpoint())
Trainer.__init__ = __init__
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _start(
    script: str, arguments: list[str], log: Path, kill_step: int | None = None
) -> subprocess.Popen:
    """Start examples/<script> in a new process, in `log`'s folder, killed right after its
    checkpoint at `kill_step` if given; its output goes to `log` (a file, so that the process never
    blocks on a full pipe)."""
    command = [str(ROOT / "examples" / script), *arguments]
    if kill_step is not None:
        command = ["-c", KILLED_AFTER_CHECKPOINT, *command]
    with open(log, "w") as output:
        return subprocess.Popen(
            [sys.executable, *command],
            cwd=log.parent,
            env={**ENV, "KILL_STEP": str(kill_step)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def _log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def _finished(process: subprocess.Popen, log: Path, timeout: float = 1800) -> None:
    returncode = process.wait(timeout=timeout)  # a hang guard only
    assert returncode == 0, f"exit {returncode}\n{_log_tail(log)}"


def _killed_after_checkpoint(
    process: subprocess.Popen, output_dir: Path, log: Path, step: int, max_steps: int
) -> Path:
    """Wait for the run started with `kill_step=step` to die, and check that it died of the kill,
    right after its checkpoint at `step` and before anything final was saved."""
    returncode = process.wait(timeout=1800)  # a hang guard only
    assert returncode == -signal.SIGKILL, f"the run was not killed (exit {returncode})\n" + (
        _log_tail(log)
    )
    checkpoint = output_dir / f"checkpoint-{step}"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["global_step"] == step
    assert not (output_dir / f"checkpoint-{max_steps}").exists()
    assert not (output_dir / "trainer_state.json").exists()
    return checkpoint


def _step_logs(output_dir: Path) -> dict[int, dict]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return {entry["step"]: entry for entry in state["log_history"] if "loss" in entry}


def _assert_same_tensors(expected: Path, actual: Path, tolerance: float = 1e-6) -> None:
    expected_tensors, actual_tensors = load_file(expected), load_file(actual)
    assert expected_tensors.keys() == actual_tensors.keys()
    for name, value in expected_tensors.items():
        difference = (actual_tensors[name].double() - value.double()).abs().max().item()
        assert difference <= tolerance, f"{name}: max abs difference {difference:.3g}"


def _assert_kill_and_resume_loses_nothing(
    tmp_path: Path, script: str, arguments: list[str], save_steps: int, max_steps: int
) -> None:
    """Runs `script` three times with the same arguments: uninterrupted (the reference), killed
    after its checkpoint at `save_steps`, and resumed from that checkpoint in a new process; the
    resumed run must end as the reference did."""
    assert max_steps < 2 * save_steps  # one checkpoint before the end: the one the run dies after
    arguments = [
        *arguments,
        "--max_steps", str(max_steps),
        "--save_strategy", "steps",
        "--save_steps", str(save_steps),
        "--save_total_limit", "2",
        "--logging_steps", "1",
        "--eval_strategy", "no",
        "--disable_tqdm", "true",
        "--seed", "0",
    ]  # fmt: skip
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    logs = {name: tmp_path / f"{name}.log" for name in ("reference", "killed", "resumed")}
    reference = _start(script, [*arguments, "--output_dir", str(reference_dir)], logs["reference"])
    try:
        killed = _start(
            script, [*arguments, "--output_dir", str(killed_dir)], logs["killed"], save_steps
        )
        checkpoint = _killed_after_checkpoint(
            killed, killed_dir, logs["killed"], save_steps, max_steps
        )
        resumed = _start(
            script,
            [
                *arguments,
                "--output_dir",
                str(killed_dir),
                "--resume_from_checkpoint",
                str(checkpoint),
            ],
            logs["resumed"],
        )
        _finished(resumed, logs["resumed"])
        _finished(reference, logs["reference"])
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait()

    config = json.loads((reference_dir / "config.json").read_text())
    assert config["hidden_dropout_prob"] > 0  # dropout on: the RNG state must be restored
    # The checkpoint the run died after is the reference's, and the training after it is too.
    _assert_same_tensors(
        reference_dir / f"checkpoint-{save_steps}" / "model.safetensors",
        checkpoint / "model.safetensors",
    )
    _assert_same_tensors(reference_dir / "model.safetensors", killed_dir / "model.safetensors")
    expected, resumed_logs = _step_logs(reference_dir), _step_logs(killed_dir)
    assert sorted(expected) == sorted(resumed_logs) == list(range(1, max_steps + 1))
    for step in range(save_steps + 1, max_steps + 1):
        for key in ("loss", "grad_norm", "learning_rate"):
            assert resumed_logs[step][key] == pytest.approx(expected[step][key], rel=1e-6), (
                f"step {step}: {key} {resumed_logs[step][key]} != {expected[step][key]}"
            )
    # The weights moved after the checkpoint (the comparison above is not of untouched weights).
    before = load_file(checkpoint / "model.safetensors")
    after = load_file(killed_dir / "model.safetensors")
    assert any(not torch.equal(before[name], after[name]) for name in before)
    expected_eval = json.loads((reference_dir / "eval_results.json").read_text())
    resumed_eval = json.loads((killed_dir / "eval_results.json").read_text())
    assert resumed_eval["eval_loss"] == pytest.approx(expected_eval["eval_loss"], rel=1e-6)


@pytest.mark.slow
def test_gpt_pretraining_killed_and_resumed_ends_as_if_never_interrupted(tmp_path):
    _assert_kill_and_resume_loses_nothing(
        tmp_path,
        "pretrain_gpt.py",
        [
            "--config_overrides",
            "num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64",
            "--tokenizer_vocab_size", "300",
            "--block_size", "32",
            "--per_device_train_batch_size", "4",
            "--warmup_steps", "10",
            "--num_samples", "0",
        ],
        save_steps=20,
        max_steps=36,
    )  # fmt: skip


@pytest.mark.slow
def test_bert_pretraining_killed_and_resumed_ends_as_if_never_interrupted(tmp_path):
    # One WordPiece tokenizer for both runs: training one is not reproducible across processes
    # (see test_wordpiece_training_is_reproducible_across_processes); a resumed run reuses the
    # tokenizer of the run it continues.
    tokenizer = tmp_path / "wordpiece"
    train_wordpiece(pydoc_corpus(), 400, show_progress=False).save_pretrained(tokenizer)
    _assert_kill_and_resume_loses_nothing(
        tmp_path,
        "pretrain_bert.py",
        [
            "--config_overrides",
            "num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64",
            "--tokenizer_name", str(tokenizer),
            "--max_seq_length", "32",
            "--per_device_train_batch_size", "64",
            "--warmup_steps", "10",
        ],
        save_steps=15,
        max_steps=28,
    )  # fmt: skip


@pytest.mark.slow
def test_translation_killed_and_resumed_ends_as_if_never_interrupted(tmp_path):
    # 320 pairs in batches of 16: 20 steps an epoch, so the run resumes mid-epoch and goes on
    # through later epochs, each shuffled anew.
    _assert_kill_and_resume_loses_nothing(
        tmp_path,
        "train_translation.py",
        [
            "--config_overrides",
            "hidden_size=32,encoder_layers=1,decoder_layers=1,num_attention_heads=2,"
            "intermediate_size=64",
            "--tokenizer_vocab_size", "200",
            "--max_train_samples", "320",
            "--max_eval_samples", "16",
            "--max_predict_samples", "16",
            "--per_device_train_batch_size", "16",
            "--max_source_length", "24",
            "--max_target_length", "16",
            "--num_beams", "2",
            "--num_samples", "0",
            "--warmup_steps", "10",
        ],
        save_steps=30,
        max_steps=50,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# The tokenizer a resumed run uses
# --------------------------------------------------------------------------------------------------


def _training_arguments(output_dir: Path, **values):
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=str(output_dir), report_to="none", use_cpu=True, **values)


def test_a_resumed_run_takes_the_tokenizer_of_its_checkpoint(tmp_path, word_tokenizer):
    from hf_scratch.training import load_or_train_tokenizer

    checkpoint = tmp_path / "first-run" / "checkpoint-10"
    word_tokenizer.save_pretrained(checkpoint)
    # Resumed into another output folder, which has no tokenizer of its own: training one again
    # could give other token ids than the checkpoint's weights were trained with.
    arguments = _training_arguments(tmp_path / "elsewhere", resume_from_checkpoint=str(checkpoint))
    tokenizer = load_or_train_tokenizer(
        None, arguments, lambda: ["text"], lambda texts: pytest.fail("the tokenizer was trained")
    )
    assert tokenizer.get_vocab() == word_tokenizer.get_vocab()


def test_a_run_killed_while_saving_its_tokenizer_leaves_none_half_written(tmp_path, word_tokenizer):
    from hf_scratch.training import TOKENIZER_RECORD, load_or_train_tokenizer

    class KilledWhileSaving:
        def save_pretrained(self, folder):
            Path(folder).mkdir(parents=True)
            (Path(folder) / "tokenizer.json").write_text('{"version": "1.0", "trunc')
            raise KeyboardInterrupt  # the process dies here

    arguments = _training_arguments(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        load_or_train_tokenizer(
            None, arguments, lambda: ["text"], lambda texts: KilledWhileSaving()
        )
    assert not (tmp_path / "tokenizer.json").exists()  # the next run does not take it for one
    assert not (tmp_path / TOKENIZER_RECORD).exists()
    tokenizer = load_or_train_tokenizer(
        None, arguments, lambda: ["text"], lambda texts: word_tokenizer
    )
    assert tokenizer.get_vocab() == word_tokenizer.get_vocab()
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / TOKENIZER_RECORD).is_file()


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="pending: tokenizers' WordPieceTrainer numbers the '##' continuation pieces in hash-map "
    "order, different in every process (huggingface/tokenizers#1794), so train_wordpiece "
    "(hf_scratch/tokenization.py) gives another vocabulary in each run",
)
def test_wordpiece_training_is_reproducible_across_processes(tmp_path):
    """The same text and vocabulary size give the same tokenizer in every process: a BERT run
    restarted after a fault before its tokenizer was saved, or a reference run, sees the same
    token ids."""
    code = (
        "import hashlib\n"
        "from hf_scratch.data import pydoc_corpus\n"
        "from hf_scratch.tokenization import train_wordpiece\n"
        "tokenizer = train_wordpiece(pydoc_corpus(), 400, show_progress=False)\n"
        "print(hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest())\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=ENV, cwd=tmp_path, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    digests = [process.communicate(timeout=300)[0].strip() for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert digests[0] == digests[1]
