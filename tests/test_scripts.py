"""The example scripts follow transformers' example conventions: stages (`--do_train`, `--do_eval`,
`--do_predict`), `--max_*_samples`, `--streaming`, `--trust_remote_code` by opt-in only, a
tokenizer never reused for other data, a character-level tokenizer, no noise on CPU runs, and
saved generation settings that hold only what differs from the defaults."""

import json
import warnings
from functools import partial
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA, TINY_GPT_RUN, example_script, tiny_gpt_config
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainingArguments,
)

from hf_scratch import ScratchGPTLMHeadModel, ScratchTransformerForConditionalGeneration
from hf_scratch.tokenization import train_byte_level_bpe, train_characters
from hf_scratch.training import (
    TOKENIZER_RECORD,
    from_pretrained,
    load_or_train_tokenizer,
    parse_arguments,
)

SHAKESPEARE = SHARED_DATA / "tinyshakespeare" / "input.txt"
TINY_GPT = [*TINY_GPT_RUN, "--num_samples", "0"]


def _state(output_dir: Path) -> dict:
    return json.loads((output_dir / "trainer_state.json").read_text())


# --------------------------------------------------------------------------------------------------
# What a GPT pre-training run (the shared `pretrained_gpt` fixture) writes and prints
# --------------------------------------------------------------------------------------------------


def test_default_stages_train_and_evaluate_max_samples_limit(pretrained_gpt):
    state = _state(pretrained_gpt.output_dir)
    assert state["global_step"] == 40  # 320 blocks in batches of 8, one epoch
    saved = json.loads((pretrained_gpt.output_dir / "eval_results.json").read_text())
    assert saved["eval_loss"] == pretrained_gpt.metrics["eval_loss"]
    assert [entry for entry in state["log_history"] if "eval_loss" in entry]  # per-epoch eval
    # 48 blocks evaluated in batches of 16: three steps
    metrics = pretrained_gpt.metrics
    assert metrics["eval_runtime"] * metrics["eval_steps_per_second"] == pytest.approx(3, abs=0.05)


def test_the_run_writes_plots_card_and_one_tokenizer(pretrained_gpt):
    output_dir = pretrained_gpt.output_dir
    for name in ("training_curves", "attention_self_attention_causal"):
        png = (output_dir / "plots" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    card = (output_dir / "README.md").read_text()
    assert "Radford" in card and "AutoModelForCausalLM" in card
    assert not (output_dir / "tokenizer").exists()  # one copy, next to the model
    assert (output_dir / "tokenizer.json").is_file()
    record = json.loads((output_dir / TOKENIZER_RECORD).read_text())
    assert record["recipe"] == {"trainer": "train_byte_level_bpe", "vocab_size": 300}
    assert record["data"].startswith("the text of Python's documentation")


def test_a_cpu_run_warns_of_no_pinned_memory(pretrained_gpt):
    pinning = [message for message in pretrained_gpt.warnings if "pin_memory" in message]
    assert not pinning, pinning


def test_do_eval_alone_evaluates_a_saved_folder_and_saves_nothing(pretrained_gpt, tmp_path):
    evaluation = example_script("pretrain_gpt").main(
        [
            *TINY_GPT,
            "--model_name_or_path", str(pretrained_gpt.output_dir),
            "--do_eval",
            "--output_dir", str(tmp_path),
            "--max_eval_samples", "48",
        ]
    )  # fmt: skip
    assert evaluation["eval_loss"] == pytest.approx(pretrained_gpt.metrics["eval_loss"], rel=1e-5)
    assert (tmp_path / "eval_results.json").is_file()
    assert not (tmp_path / "model.safetensors").exists()
    assert not (tmp_path / "trainer_state.json").exists()  # nothing trained


def test_streaming_trains_for_max_steps_from_an_iterable_dataset(tmp_path, capsys):
    example_script("pretrain_gpt").main(
        [
            *TINY_GPT,
            "--train_file", str(SHARED_DATA / "wikitext-2" / "valid.txt"),
            "--streaming",
            "--max_steps", "3",
            "--validation_rows", "50",
            "--output_dir", str(tmp_path),
            "--logging_steps", "1",
            "--save_strategy", "no",
        ]
    )  # fmt: skip
    assert "streamed train" in capsys.readouterr().out
    state = _state(tmp_path)
    assert state["global_step"] == 3
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [1, 2, 3]


def test_streaming_without_max_steps_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--streaming needs --max_steps"):
        example_script("pretrain_gpt").main(
            [*TINY_GPT, "--streaming", "--output_dir", str(tmp_path)]
        )


# --------------------------------------------------------------------------------------------------
# Stages and flags
# --------------------------------------------------------------------------------------------------


def _stages(argv, **settings):
    arguments = parse_arguments(
        (TrainingArguments,), ["--output_dir", "out", "--eval_strategy", "epoch"], argv, **settings
    )[0]
    return arguments.do_train, arguments.do_eval, arguments.do_predict, arguments.eval_strategy


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], (True, True, False, "epoch")),
        (["--do_eval"], (False, True, False, "epoch")),
        (["--do_train"], (True, False, False, "no")),
        (["--do_train", "--eval_strategy", "epoch"], (True, False, False, "epoch")),
        (["--do_train", "true", "--do_eval=false"], (True, False, False, "no")),
    ],
)
def test_stages_run_as_named_and_default_to_the_scripts(argv, expected):
    assert _stages(argv) == expected


def test_predict_stage_when_the_script_has_one():
    stages = ("do_train", "do_eval", "do_predict")
    assert _stages([], stages=stages, default_stages=stages)[:3] == (True, True, True)
    assert _stages(["--do_predict"], stages=stages)[:3] == (False, False, True)
    with pytest.raises(ValueError, match=r"--do_predict: .* has only --do_train, --do_eval"):
        _stages(["--do_predict"])


def test_task_is_an_alias_of_task_name():
    finetune = example_script("finetune_bert")
    for flag in ("--task_name", "--task"):
        arguments, _ = parse_arguments(
            (finetune.Arguments, TrainingArguments), ["--output_dir", "out"], [flag, "MRPC"]
        )
        assert arguments.task_name == "MRPC"


# --------------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------------


def test_character_tokenizer_round_trips_text_exactly_with_nanogpts_ids(tmp_path):
    text = SHAKESPEARE.read_text()
    tokenizer = train_characters([text])
    assert len(tokenizer) == 65 + 2  # 65 characters, <|endoftext|>, <unk>
    assert tokenizer("First")["input_ids"] == [18, 47, 56, 57, 58]  # nanoGPT's shakespeare_char
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    sample = text[:3000] + tokenizer.eos_token + "  two  spaces\n\nand lines"
    ids = loaded(sample)["input_ids"]
    assert len(ids) == len(text[:3000]) + 1 + len("  two  spaces\n\nand lines")
    assert loaded.decode(ids) == sample
    assert loaded("é")["input_ids"] == [loaded.unk_token_id]


def test_a_tokenizer_is_reused_for_the_same_data_and_retrained_for_other_data(tmp_path, capsys):
    arguments = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    first = ["the cat sat on the mat"] * 20
    other = ["lorem ipsum dolor sit amet"] * 20
    bpe = partial(train_byte_level_bpe, vocab_size=280, show_progress=False)
    load = partial(load_or_train_tokenizer, None, arguments, train=bpe)
    trained = load(lambda: first, data="cats").get_vocab()
    assert load(lambda: first, data="cats, again").get_vocab() == trained
    assert "using the tokenizer in" in capsys.readouterr().out
    retrained = load(lambda: other, data="lorem").get_vocab()
    message = capsys.readouterr().out
    assert "was trained on cats" in message and "this run's data is lorem" in message
    assert retrained != trained and "Ġipsum" in retrained and "Ġipsum" not in trained
    assert json.loads((tmp_path / TOKENIZER_RECORD).read_text())["data"] == "lorem"
    # other settings on the same data train again too
    bigger = partial(train_byte_level_bpe, vocab_size=290, show_progress=False)
    load_or_train_tokenizer(None, arguments, lambda: other, bigger, data="lorem")
    assert "training a new one" in capsys.readouterr().out
    assert json.loads((tmp_path / TOKENIZER_RECORD).read_text())["recipe"]["vocab_size"] == 290


def test_a_char_run_into_a_bpe_runs_folder_trains_its_own_tokenizer(pretrained_gpt, tmp_path):
    """End to end: the second run in the same folder, on other data, with --tokenizer_type char."""
    trained = pretrained_gpt.output_dir
    folder = tmp_path / "shared-folder"
    for name in ("tokenizer.json", "tokenizer_config.json", TOKENIZER_RECORD):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes((trained / name).read_bytes())
    example_script("pretrain_gpt").main(
        [
            *TINY_GPT,
            "--train_file", str(SHAKESPEARE),
            "--tokenizer_type", "char",
            "--output_dir", str(folder),
            "--max_steps", "1",
            "--max_eval_samples", "8",
            "--save_strategy", "no",
        ]
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(folder)
    characters = set(tokenizer.get_vocab()) - {tokenizer.eos_token, tokenizer.unk_token}
    assert 60 <= len(characters) <= 65 and all(len(token) == 1 for token in characters)
    assert json.loads((folder / "config.json").read_text())["vocab_size"] == len(tokenizer)
    assert json.loads((folder / TOKENIZER_RECORD).read_text())["recipe"] == {
        "trainer": "train_characters"
    }


# --------------------------------------------------------------------------------------------------
# Remote code only by opt-in
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def forked_model_folder(tmp_path, word_tokenizer):
    """A saved GPT whose code declares a model type this installation does not know: what a hub
    repository with custom code looks like to a user."""
    folder = tmp_path / "fork"
    ScratchGPTLMHeadModel(tiny_gpt_config()).save_pretrained(folder)
    word_tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "someones_gpt_fork"
    (folder / "config.json").write_text(json.dumps(config))
    source = (folder / "configuration_gpt.py").read_text()
    assert 'model_type = "hf_scratch_gpt"' in source
    source = source.replace('model_type = "hf_scratch_gpt"', 'model_type = "someones_gpt_fork"')
    (folder / "configuration_gpt.py").write_text(source)
    return folder


def test_code_in_a_folder_runs_only_with_trust_remote_code(forked_model_folder, monkeypatch):
    monkeypatch.setenv("HF_MODULES_CACHE", str(forked_model_folder.parent / "modules"))
    with pytest.raises(ValueError, match="pass --trust_remote_code") as refused:
        from_pretrained(AutoModelForCausalLM, str(forked_model_folder))
    assert str(forked_model_folder) in str(refused.value)
    model = from_pretrained(AutoModelForCausalLM, str(forked_model_folder), trust_remote_code=True)
    assert model.config.model_type == "someones_gpt_fork"


def test_a_script_refuses_remote_code_without_the_flag(forked_model_folder, tmp_path):
    with pytest.raises(ValueError, match="pass --trust_remote_code"):
        example_script("finetune_gpt_classification").main(
            ["--model_name_or_path", str(forked_model_folder), "--output_dir", str(tmp_path)]
        )


def test_folders_written_by_hf_scratch_load_without_the_flag(tmp_path):
    model = ScratchGPTLMHeadModel(tiny_gpt_config())
    model.save_pretrained(tmp_path)
    loaded = from_pretrained(AutoModelForSequenceClassification, str(tmp_path), num_labels=3)
    assert type(loaded).__module__ == "hf_scratch.modeling_gpt"  # the installed code
    torch.testing.assert_close(
        loaded.get_input_embeddings().weight, model.get_input_embeddings().weight
    )


# --------------------------------------------------------------------------------------------------
# Translation: generation settings
# --------------------------------------------------------------------------------------------------


def test_translation_generation_flags_are_honoured_and_only_non_defaults_saved(
    tmp_path, monkeypatch, capfd
):
    beams_used = []
    generate = ScratchTransformerForConditionalGeneration.generate

    def recording_generate(self, *args, **kwargs):
        if "synced_gpus" in kwargs:  # a call of Seq2SeqTrainer's (not the attention plot's)
            beams_used.append(kwargs.get("num_beams", self.generation_config.num_beams))
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(ScratchTransformerForConditionalGeneration, "generate", recording_generate)
    output_dir = tmp_path / "dates"
    example_script("train_translation").main(
        [
            "--output_dir", str(output_dir),
            "--config_overrides",
            "hidden_size=32,encoder_layers=1,decoder_layers=1,num_attention_heads=2,"
            "intermediate_size=64",
            "--tokenizer_vocab_size", "200",
            "--max_train_samples", "64",
            "--max_eval_samples", "8",
            "--max_predict_samples", "8",
            "--max_steps", "2",
            "--max_target_length", "16",
            "--num_samples", "0",
            "--generation_num_beams", "3",
            "--save_strategy", "no",
            "--disable_tqdm", "true",
        ]
    )  # fmt: skip
    assert beams_used and set(beams_used) == {3}  # the user's flag, not the script's default 4
    saved = json.loads((output_dir / "generation_config.json").read_text())
    assert saved["num_beams"] == 4 and saved["length_penalty"] == 0.6  # the script's defaults
    assert "max_length" not in saved and "top_k" not in saved
    model = ScratchTransformerForConditionalGeneration.from_pretrained(output_dir)
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        output = model.generate(torch.tensor([[5, 6, 7, 2]]), max_new_tokens=3)
    assert output.shape[1] <= 4
    assert "max_length" not in capfd.readouterr().err  # transformers' "both were set" warning
