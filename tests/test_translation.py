"""The translation workflow: parallel data, the shared tokenizer, BLEU / chrF, and
examples/train_translation.py end to end with the saved folder reloaded where hf_scratch is not
installed."""

import datetime
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, run_example, run_without_hf_scratch
from transformers import EvalPrediction

from hf_scratch.data import TranslationDataArguments, date_translation_pairs, load_translation_data
from hf_scratch.metrics import translation_metrics
from hf_scratch.tokenization import train_translation_bpe

MULTI30K = SHARED_DATA / "multi30k" / "raw"


def test_date_pairs_are_correct_and_reproducible():
    pairs = date_translation_pairs(300, seed=5)
    assert pairs == date_translation_pairs(300, seed=5)
    assert pairs != date_translation_pairs(300, seed=6)
    assert len(set(pairs["source"])) > 290
    for source, target in zip(pairs["source"], pairs["target"], strict=True):
        date = datetime.date.fromisoformat(target)
        assert str(date.year) in source and str(date.day) in source
    assert any(source[0].isalpha() for source in pairs["source"])  # weekday and month names


def _write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_parallel_data_from_every_source_layout(tmp_path):
    english = ["A man rides.", "Two dogs play.", "A girl reads.", "It rains."]
    german = ["Ein Mann fährt.", "Zwei Hunde spielen.", "Ein Mädchen liest.", "Es regnet."]
    for prefix in ("train", "val"):
        _write(tmp_path / f"{prefix}.en", english)
        _write(tmp_path / f"{prefix}.de", german)
    tsv = _write(
        tmp_path / "pairs.tsv", [f"{e}\t{g}" for e, g in zip(english, german, strict=True)]
    )
    flat = _write(
        tmp_path / "flat.jsonl",
        [json.dumps({"en": e, "de": g}) for e, g in zip(english, german, strict=True)],
    )
    nested = _write(
        tmp_path / "nested.jsonl",
        [
            json.dumps({"translation": {"en": e, "de": g}})
            for e, g in zip(english, german, strict=True)
        ],
    )
    sources = [
        TranslationDataArguments(data_dir=str(tmp_path), test_prefix=None),
        TranslationDataArguments(train_file=tsv, validation_file=tsv),
        TranslationDataArguments(train_file=flat, validation_file=nested, test_file=flat),
    ]
    for arguments in sources:
        datasets = load_translation_data(arguments)
        train = zip(datasets["train"]["source"], datasets["train"]["target"], strict=True)
        assert sorted(train) == sorted(zip(english, german, strict=True))
        assert list(datasets["validation"]["target"]) == german

    reversed_direction = load_translation_data(
        TranslationDataArguments(
            train_file=flat, validation_file=flat, source_lang="de", target_lang="en"
        )
    )
    assert list(reversed_direction["validation"]["source"]) == german


def test_misaligned_parallel_files_are_refused(tmp_path):
    for prefix in ("train", "val"):
        _write(tmp_path / f"{prefix}.en", ["one", "two", "three"])
        _write(tmp_path / f"{prefix}.de", ["eins", "zwei"])
    with pytest.raises(ValueError, match=r"train\.en has 3 lines but \.de has 2"):
        load_translation_data(TranslationDataArguments(data_dir=str(tmp_path), test_prefix=None))
    bad = _write(tmp_path / "bad.tsv", ["a\tb", "no tab here", "c\td"])
    with pytest.raises(ValueError, match=r"lines \[2\] do not have exactly two"):
        load_translation_data(TranslationDataArguments(train_file=bad, validation_file=bad))


def test_multi30k_loads_line_aligned():
    datasets = load_translation_data(
        TranslationDataArguments(
            data_dir=str(MULTI30K), max_eval_samples=50, max_predict_samples=40
        )
    )
    assert len(datasets["train"]) == 29000
    assert (len(datasets["validation"]), len(datasets["test"])) == (50, 40)
    first = (MULTI30K / "test_2016_flickr.de").read_text(encoding="utf-8").split("\n")[0]
    assert datasets["test"][0]["target"] == first


def test_shared_tokenizer_round_trips_both_languages():
    pairs = date_translation_pairs(500)
    texts = pairs["source"] + pairs["target"] + ["Ein Mädchen läuft über die Straße."] * 5
    tokenizer = train_translation_bpe(texts, vocab_size=300, show_progress=False)
    assert [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id] == [0, 1, 2]
    encoded = tokenizer("Ein Mädchen läuft.", text_target="2021-03-05")
    assert encoded["input_ids"][-1] == encoded["labels"][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(encoded["input_ids"], skip_special_tokens=True) == "Ein Mädchen läuft."
    assert tokenizer.decode(encoded["labels"], skip_special_tokens=True) == "2021-03-05"
    digits = tokenizer.convert_ids_to_tokens(encoded["labels"][:-1])
    assert all(len(token.strip("▁")) <= 1 for token in digits)  # numbers are spelled out
    assert tokenizer.unk_token_id in tokenizer("日本")["input_ids"]


def test_bleu_and_chrf_of_generated_ids():
    pairs = date_translation_pairs(200)
    tokenizer = train_translation_bpe(pairs["source"] + pairs["target"], 200, show_progress=False)
    references = ["1999-01-02", "2020-12-31"]
    labels = tokenizer(text_target=references, padding=True)["input_ids"]
    labels = np.where(np.array(labels) == tokenizer.pad_token_id, -100, labels)
    start = np.full((2, 1), tokenizer.bos_token_id)
    compute = translation_metrics(tokenizer)
    perfect = compute(EvalPrediction(np.concatenate([start, np.maximum(labels, 0)], 1), labels))
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["chrf"] == pytest.approx(100.0)
    assert perfect["gen_len"] == len(tokenizer(references[0])["input_ids"]) - 1  # without </s>
    gathered = np.concatenate([start, np.maximum(labels, 0), np.full((2, 3), -100)], 1)
    assert compute(EvalPrediction(gathered, labels)) == perfect  # padding across batches ignored
    wrong = tokenizer(text_target=["1999-01-03", "1820-12-31"], padding=True)["input_ids"]
    partial = compute(EvalPrediction(np.array(wrong), labels))
    assert 0 < partial["bleu"] < 100 and 0 < partial["chrf"] < 100


TINY_MODEL = (
    "hidden_size=32,encoder_layers=2,decoder_layers=2,num_attention_heads=4,intermediate_size=64"
)
DEMO_MODEL = (
    "hidden_size=64,encoder_layers=2,decoder_layers=2,num_attention_heads=4,intermediate_size=256"
)


@pytest.mark.slow
def test_translation_example_trains_reports_bleu_and_saves_a_shareable_folder(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for prefix, count in (("train", 300), ("val", 20), ("test_2016_flickr", 20)):
        for lang in ("en", "de"):
            lines = (MULTI30K / f"{prefix}.{lang}").read_text(encoding="utf-8").split("\n")
            _write(data / f"{prefix}.{lang}", lines[:count])
    output = tmp_path / "model"
    result = run_example(
        "train_translation.py",
        "--data_dir", str(data),
        "--output_dir", str(output),
        "--config_overrides", TINY_MODEL,
        "--tokenizer_vocab_size", "400",
        "--max_steps", "12",
        "--per_device_train_batch_size", "16",
        "--num_beams", "2",
        "--max_target_length", "24",
        "--eval_strategy", "no",
        "--save_strategy", "no",
        "--num_samples", "2",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.stdout.count("hypothesis: ") == 2
    test_metrics = json.loads((output / "test_results.json").read_text())
    assert {"test_bleu", "test_chrf", "test_gen_len"} <= set(test_metrics)
    assert "eval_bleu" in json.loads((output / "eval_results.json").read_text())
    saved = json.loads((output / "generation_config.json").read_text())
    assert (saved["num_beams"], saved["length_penalty"]) == (2, 0.6)
    assert "max_length" not in saved  # evaluation's limit, not the model's
    pictures = ["training_curves", "attention_encoder_self_attention"]
    pictures += ["attention_decoder_self_attention", "attention_cross_attention"]
    for name in pictures:
        assert (output / "plots" / f"{name}.png").stat().st_size > 5000, name
    card = (output / "README.md").read_text()
    assert "AutoModelForSeq2SeqLM" in card and "test_bleu" in card and "Vaswani" in card

    translate = """
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained("model", trust_remote_code=True)
        model = AutoModelForSeq2SeqLM.from_pretrained("model", trust_remote_code=True).eval()
        batch = tokenizer(["A man rides a bike.", "Two dogs."], return_tensors="pt", padding=True)
        print(type(model).__name__, model.generate(**batch, max_new_tokens=10).tolist())
        """
    fresh = run_without_hf_scratch(translate, cwd=tmp_path).stdout
    assert fresh.startswith("ScratchTransformerForConditionalGeneration [[1, ")
    import subprocess
    import sys
    import textwrap

    installed = subprocess.run(
        [sys.executable, "-c", "import hf_scratch\n" + textwrap.dedent(translate)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert fresh == installed


@pytest.mark.slow
def test_translation_demo_learns_the_date_task(tmp_path):
    result = run_example(
        "train_translation.py",
        "--output_dir", str(tmp_path / "dates"),
        "--config_overrides", DEMO_MODEL,
        "--learning_rate", "3e-3",
        "--max_eval_samples", "200",
        "--max_predict_samples", "200",
        "--num_train_epochs", "2",
        "--eval_strategy", "no",
        "--save_strategy", "no",
        cwd=tmp_path,
    )  # fmt: skip
    metrics = json.loads((tmp_path / "dates" / "test_results.json").read_text())
    assert metrics["test_bleu"] > 80, result.stdout[-2000:]
