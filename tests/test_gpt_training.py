"""GPT with the Hugging Face training stack: gradient accumulation, the example scripts end to end,
and loading the saved folders where hf_scratch is not installed."""

import json

import pytest
import torch
from conftest import (
    assert_accumulation_matches_one_large_batch,
    example_script,
    run_without_hf_scratch,
    tiny_gpt_config,
)
from safetensors.torch import save_file

from hf_scratch import (
    ScratchGPTForMultipleChoice,
    ScratchGPTForSequenceClassification,
    ScratchGPTLMHeadModel,
    ScratchGPTModel,
)


@pytest.mark.parametrize("head", ["lm", "classification"])
def test_gradient_accumulation_gives_the_update_of_one_large_batch(tmp_path, head):
    torch.manual_seed(0)
    if head == "lm":
        make = lambda: ScratchGPTLMHeadModel(tiny_gpt_config())  # noqa: E731
        # Rows with different numbers of labelled tokens: a mean of per-micro-batch means would
        # differ.
        dataset = []
        for length in (3, 12, 5, 12, 8, 2, 12, 7):
            input_ids = torch.randint(1, 101, (12,))
            labels = input_ids.clone()
            labels[length:] = -100
            dataset.append({"input_ids": input_ids, "labels": labels})
    else:
        make = lambda: ScratchGPTForSequenceClassification(tiny_gpt_config(num_labels=3))  # noqa: E731
        dataset = [
            {"input_ids": torch.randint(1, 101, (10,)), "labels": torch.tensor(i % 3)}
            for i in range(8)
        ]
    assert_accumulation_matches_one_large_batch(make, dataset, tmp_path)


def test_the_trainer_reports_the_models_own_mean_loss(tmp_path):
    """The Trainer divides by the labels it counts (`num_items_in_batch`); it must count those the
    loss predicts, every label but the first of each row, or it reports the loss times (T-1)/T."""
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    model = ScratchGPTLMHeadModel(tiny_gpt_config())
    rows = [{"input_ids": torch.randint(1, 101, (12,))} for _ in range(4)]
    dataset = [{**row, "labels": row["input_ids"]} for row in rows]
    with torch.no_grad():
        batch = torch.stack([row["input_ids"] for row in rows])
        expected = model.eval()(batch, labels=batch).loss.item()
    arguments = TrainingArguments(
        tmp_path, per_device_train_batch_size=4, max_steps=1, learning_rate=0.0, logging_steps=1,
        report_to="none", save_strategy="no", use_cpu=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=arguments, train_dataset=dataset)
    trainer.train()
    logged = next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)
    assert logged == pytest.approx(expected, rel=1e-5)


def test_saved_folders_load_through_every_auto_class_without_hf_scratch(tmp_path):
    torch.manual_seed(0)
    input_ids = torch.randint(1, 101, (2, 2, 7))
    expected = {}
    for auto_class, model in [
        ("AutoModel", ScratchGPTModel(tiny_gpt_config())),
        ("AutoModelForCausalLM", ScratchGPTLMHeadModel(tiny_gpt_config())),
        (
            "AutoModelForSequenceClassification",
            ScratchGPTForSequenceClassification(tiny_gpt_config()),
        ),
        ("AutoModelForMultipleChoice", ScratchGPTForMultipleChoice(tiny_gpt_config())),
    ]:
        model.eval().save_pretrained(tmp_path / auto_class)
        inputs = input_ids if auto_class == "AutoModelForMultipleChoice" else input_ids[:, 0]
        output = model(inputs)
        expected[auto_class] = (
            output.last_hidden_state if auto_class == "AutoModel" else output.logits
        ).detach()
    save_file({"input_ids": input_ids, **expected}, tmp_path / "expected.safetensors")
    config = json.loads((tmp_path / "AutoModel" / "config.json").read_text())
    assert set(config["auto_map"]) == {
        "AutoConfig",
        "AutoModel",
        "AutoModelForCausalLM",
        "AutoModelForSequenceClassification",
        "AutoModelForMultipleChoice",
    }
    result = run_without_hf_scratch(
        f"""
        import torch, transformers
        from safetensors.torch import load_file
        try:
            import hf_scratch
            raise SystemExit("hf_scratch should not be importable here")
        except ImportError:
            pass
        expected = load_file({str(tmp_path / "expected.safetensors")!r})
        for name in ["AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification",
                     "AutoModelForMultipleChoice"]:
            model = getattr(transformers, name).from_pretrained({str(tmp_path)!r} + "/" + name,
                                                                trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            inputs = expected["input_ids"]
            if name != "AutoModelForMultipleChoice":
                inputs = inputs[:, 0]
            output = model(inputs)
            value = output.last_hidden_state if name == "AutoModel" else output.logits
            torch.testing.assert_close(value, expected[name])
            if name == "AutoModelForCausalLM":
                cached = model.generate(inputs, max_new_tokens=5, do_sample=False, pad_token_id=0)
                plain = model.generate(inputs, max_new_tokens=5, do_sample=False, pad_token_id=0,
                                       use_cache=False)
                assert torch.equal(cached, plain)
            print("loaded", name, type(model).__name__)
        """,
        cwd=tmp_path,
    )
    assert result.stdout.count("loaded") == 4


def _logged_losses(output_dir):
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def test_pretraining_example_learns_and_its_folder_generates_without_hf_scratch(pretrained_gpt):
    losses = _logged_losses(pretrained_gpt.output_dir)
    assert len(losses) == 8  # 40 steps, logged every 5
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    assert pretrained_gpt.metrics["perplexity"] < 200  # uniform over the 300 tokens: 300
    assert "--- 'The return value'" in pretrained_gpt.stdout
    folder = pretrained_gpt.output_dir
    result = run_without_hf_scratch(
        f"""
        from transformers import AutoModelForCausalLM, AutoTokenizer
        model = AutoModelForCausalLM.from_pretrained({str(folder)!r}, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained({str(folder)!r})
        inputs = tokenizer("The return value", return_tensors="pt")
        output = model.generate(**inputs, max_new_tokens=5, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id)
        print("generated", output.shape[1] - inputs["input_ids"].shape[1], "tokens")
        """,
        cwd=folder.parent,
    )
    assert "generated 5 tokens" in result.stdout


def test_fine_tuning_example_trains_with_the_auxiliary_objective(pretrained_gpt, tmp_path, capsys):
    metrics = example_script("finetune_gpt_classification").main(
        [
            "--model_name_or_path", str(pretrained_gpt.output_dir),
            "--max_train_samples", "32",
            "--max_eval_samples", "32",
            "--num_train_epochs", "6",
            "--per_device_train_batch_size", "8",
            "--learning_rate", "1e-3",
            "--logging_steps", "2",
            "--disable_tqdm", "true",
            "--output_dir", str(tmp_path),
        ]
    )  # fmt: skip
    losses = _logged_losses(tmp_path)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    saved = json.loads((tmp_path / "eval_results.json").read_text())
    assert saved["eval_accuracy"] == metrics["eval_accuracy"] and "eval_f1" in saved
    assert "eval_accuracy" in capsys.readouterr().out
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["lm_loss_weight"] == 0.5 and len(config["id2label"]) == 2
