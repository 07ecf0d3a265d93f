"""BERT: parity with transformers' BERT classes through the converters, sparse MLM prediction, the
Hugging Face contract, and bad input."""

import math

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, example_script, tiny_bert_config
from transformers import (
    AutoModelForMaskedLM,
    BertConfig,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForNextSentencePrediction,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)

from hf_scratch import ScratchBertForMaskedLM, ScratchBertForPreTraining, ScratchBertModel
from hf_scratch.convert import from_reference, to_reference

GLUE_DIR = SHARED_DATA / "glue"

SIZES = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=40,
    num_labels=3,
)


def _reference(model_class, implementation="sdpa"):
    torch.manual_seed(0)
    sizes = {**SIZES, "num_labels": 2} if model_class is BertForQuestionAnswering else SIZES
    model = model_class._from_config(BertConfig(**sizes), attn_implementation=implementation).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases, so that a swapped one cannot pass
        for name, parameter in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                parameter.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
    return model


def _batch(choices: int | None = None):
    torch.manual_seed(1)
    shape = (3, 11) if choices is None else (3, choices, 11)
    input_ids = torch.randint(1, SIZES["vocab_size"], shape)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[..., 1, 8:] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[..., 5:] = 1
    return dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


HEADS = [
    (BertModel, None, ["last_hidden_state", "pooler_output"]),
    (BertForPreTraining, None, ["prediction_logits", "seq_relationship_logits"]),
    (BertForMaskedLM, None, ["logits"]),
    (BertForNextSentencePrediction, None, ["logits"]),
    (BertForSequenceClassification, None, ["logits"]),
    (BertForTokenClassification, None, ["logits"]),
    (BertForQuestionAnswering, None, ["start_logits", "end_logits"]),
    (BertForMultipleChoice, 4, ["logits"]),
]


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize(
    ("reference_class", "choices", "fields"), HEADS, ids=[h[0].__name__ for h in HEADS]
)
def test_every_head_matches_transformers_bert(reference_class, choices, fields, implementation):
    reference = _reference(reference_class, implementation)
    ours = from_reference(reference)
    ours.config._attn_implementation = implementation
    batch = _batch(choices)
    with torch.no_grad():
        expected = reference(**batch)
        output = ours(**batch)
    for field in fields:
        torch.testing.assert_close(
            getattr(output, field), getattr(expected, field), atol=1e-5, rtol=1e-5
        )
    back = to_reference(ours)
    assert type(back) is reference_class
    for name, tensor in back.state_dict().items():
        assert torch.equal(tensor, reference.state_dict()[name]), name


def test_losses_match_transformers_bert():
    batch = _batch()
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, [2, 6]] = batch["input_ids"][:, [2, 6]]
    cases = [
        (BertForPreTraining, dict(labels=labels, next_sentence_label=torch.tensor([0, 1, 0]))),
        (BertForMaskedLM, dict(labels=labels)),
        (BertForNextSentencePrediction, dict(labels=torch.tensor([1, 0, 0]))),
        (BertForSequenceClassification, dict(labels=torch.tensor([2, 0, 1]))),
        (BertForTokenClassification, dict(labels=labels.clamp(-100, 2))),
        (
            BertForQuestionAnswering,
            dict(start_positions=torch.tensor([1, 3, 40]), end_positions=torch.tensor([2, 9, 4])),
        ),
    ]
    for reference_class, targets in cases:
        reference = _reference(reference_class)
        ours = from_reference(reference)
        with torch.no_grad():
            torch.testing.assert_close(
                ours(**batch, **targets).loss,
                reference(**batch, **targets).loss,
                atol=1e-5,
                rtol=1e-5,
            )


def test_pretraining_loss_is_mlm_plus_nsp_cross_entropy():
    """L = mean -log P(masked token) + mean -log P(IsNext / NotNext), each computed here from the
    model's own logits."""
    model = ScratchBertForPreTraining(tiny_bert_config()).eval()
    batch = _batch()
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, 3] = 7
    labels[0, 6] = 11
    nsp = torch.tensor([0, 1, 1])
    output = model(**batch, labels=labels, next_sentence_label=nsp)
    log_probabilities = output.prediction_logits.log_softmax(-1)  # (B, T, V)
    masked = labels != -100
    mlm = -log_probabilities[masked].gather(1, labels[masked][:, None]).mean()
    nsp_loss = -output.seq_relationship_logits.log_softmax(-1).gather(1, nsp[:, None]).mean()
    torch.testing.assert_close(output.mlm_loss, mlm)
    torch.testing.assert_close(output.nsp_loss, nsp_loss)
    torch.testing.assert_close(output.loss, mlm + nsp_loss)


def test_metrics_on_a_known_batch():
    """The scripts' metrics on fixed predictions whose answers are counted by hand."""
    from transformers import EvalPrediction

    from hf_scratch.metrics import classification_metrics

    logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    labels = np.array([0, 1, 1, 1, 0])  # predicted 0, 1, 0, 1, 1: 3 of 5 right
    metrics = classification_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    # class 1: true positives 2, predicted 3 (precision 2/3), actual 3 (recall 2/3): F1 2/3
    assert metrics == pytest.approx({"accuracy": 0.6, "f1": 2 / 3})

    pretrain_bert = example_script("pretrain_bert")
    mlm_labels = np.array([[5, -100, 7], [-100, 2, -100]])
    predicted = np.array([[5, 0, 1], [0, 2, 0]])  # 2 of the 3 masked tokens right
    negative_log_likelihood = np.array([[0.5, -100.0, 1.5], [-100.0, 1.0, -100.0]])
    nsp_predictions, nsp_labels = np.array([0, 1]), np.array([0, 0])
    prediction = EvalPrediction(
        predictions=(predicted, negative_log_likelihood, nsp_predictions),
        label_ids=(mlm_labels, nsp_labels),
    )
    assert pretrain_bert.compute_metrics(prediction) == pytest.approx(
        {"mlm_accuracy": 2 / 3, "mlm_perplexity": math.exp(1.0), "nsp_accuracy": 0.5}
    )


@pytest.mark.parametrize("model_class", [ScratchBertForPreTraining, ScratchBertForMaskedLM])
def test_sparse_prediction_gives_the_same_loss_and_gradients(model_class):
    torch.manual_seed(0)
    dense = model_class(tiny_bert_config())
    sparse = model_class(tiny_bert_config(sparse_prediction=True))
    sparse.load_state_dict(dense.state_dict())
    batch = _batch()
    labels = torch.full_like(batch["input_ids"], -100)
    labels[0, [1, 4]] = 5
    labels[2, 9] = 11
    outputs = {}
    for name, model in (("dense", dense), ("sparse", sparse)):
        outputs[name] = model(**batch, labels=labels)
        outputs[name].loss.backward()
    torch.testing.assert_close(outputs["sparse"].loss, outputs["dense"].loss)
    logits_name = "prediction_logits" if model_class is ScratchBertForPreTraining else "logits"
    sparse_logits = getattr(outputs["sparse"], logits_name)
    dense_logits = getattr(outputs["dense"], logits_name)
    assert sparse_logits.shape == (3, 99) and dense_logits.shape == (3, 11, 99)
    torch.testing.assert_close(sparse_logits, dense_logits[labels != -100])
    for (name, p), q in zip(dense.named_parameters(), sparse.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_bad_input_raises_value_errors():
    model = ScratchBertModel(tiny_bert_config()).eval()
    with pytest.raises(
        ValueError, match=r"input_ids contains 99, outside the valid range \[0, 99\)"
    ):
        model(torch.tensor([[1, 99]]))
    with pytest.raises(
        ValueError, match=r"token_type_ids contains 2, outside the valid range \[0, 2\)"
    ):
        model(torch.tensor([[1, 2]]), token_type_ids=torch.tensor([[0, 2]]))
    with pytest.raises(
        ValueError, match=r"length 41 is longer than max_position_embeddings \(40\)"
    ):
        model(torch.ones(1, 41, dtype=torch.long))
    with pytest.raises(
        ValueError, match=r"attention_mask has shape \(1, 3\), expected .* \(1, 4\)"
    ):
        model(torch.ones(1, 4, dtype=torch.long), attention_mask=torch.ones(1, 3))
    with pytest.raises(
        ValueError, match=r"hidden_size \(30\) must be divisible by num_attention_heads \(4\)"
    ):
        tiny_bert_config(hidden_size=30)


def test_padding_does_not_change_real_positions():
    model = ScratchBertModel(tiny_bert_config()).eval()
    input_ids = torch.randint(1, 99, (1, 6))
    padded = torch.cat([input_ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 3])
    torch.testing.assert_close(
        model(padded, attention_mask=mask).last_hidden_state[:, :6],
        model(input_ids).last_hidden_state,
        atol=1e-5,
        rtol=1e-5,
    )


def test_save_reload_keeps_the_tied_decoder(tmp_path):
    model = ScratchBertForMaskedLM(tiny_bert_config()).eval()
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert reloaded.mlm_head.decoder.weight is reloaded.bert.embeddings.word_embeddings.weight
    input_ids = torch.randint(0, 99, (2, 7))
    torch.testing.assert_close(reloaded(input_ids).logits, model(input_ids).logits)
    model.resize_token_embeddings(104)
    assert model.mlm_head.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model(torch.tensor([[103]])).logits.shape == (1, 1, 104)


# --------------------------------------------------------------------------------------------------
# Loading published checkpoint folders directly
# --------------------------------------------------------------------------------------------------


def _write_checkpoint(folder, state_dict, config):
    from safetensors.torch import save_file

    folder.mkdir()
    config.save_pretrained(folder)
    save_file(
        {name: tensor.contiguous() for name, tensor in state_dict.items()},
        folder / "model.safetensors",
    )


def test_published_checkpoint_folders_load_with_legacy_names_and_a_report(tmp_path):
    from hf_scratch.convert import load_bert_checkpoint

    reference = _reference(BertForPreTraining)
    state_dict = {
        name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        ): t
        for name, t in reference.state_dict().items()
        if not name.startswith("cls.predictions.decoder.")  # aliases of tied tensors
    }
    _write_checkpoint(tmp_path / "pretraining", state_dict, reference.config)
    model, report = load_bert_checkpoint(tmp_path / "pretraining")
    assert "cls.seq_relationship.weight" in report.unexpected
    assert not any(name.startswith("bert.") for name in report.unexpected)
    batch = _batch()
    with torch.no_grad():
        torch.testing.assert_close(
            model(**batch).last_hidden_state,
            reference.bert(**batch).last_hidden_state,
            atol=1e-5,
            rtol=1e-5,
        )

    base = {
        k.removeprefix("bert."): t
        for k, t in reference.state_dict().items()
        if k.startswith("bert.")
    }
    del base["encoder.layer.1.output.dense.bias"]
    _write_checkpoint(tmp_path / "broken", base, reference.config)
    with pytest.raises(
        ValueError, match=r"broken/model.safetensors.*missing \['layers.1.feed_forward.fc2.bias'\]"
    ):
        load_bert_checkpoint(tmp_path / "broken")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="only safetensors"):
        load_bert_checkpoint(tmp_path / "pickled")


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


TINY_OVERRIDES = "num_hidden_layers=2,hidden_size=64,num_attention_heads=2,intermediate_size=128"


@pytest.mark.slow
def test_pretraining_example_learns_and_saves_a_shareable_folder(tmp_path):
    import json

    from conftest import run_example, run_without_hf_scratch

    for split, lines in (("test", 600), ("valid", 60)):  # the README's WikiText-2 command, cut
        text = (SHARED_DATA / "wikitext-2" / f"{split}.txt").read_text(encoding="utf-8")
        (tmp_path / f"{split}.txt").write_text("\n".join(text.splitlines()[:lines]))
    run_example(
        "pretrain_bert.py",
        "--train_file", str(tmp_path / "test.txt"),
        "--validation_file", str(tmp_path / "valid.txt"),
        "--config_overrides", TINY_OVERRIDES,
        "--tokenizer_vocab_size", "1000",
        "--max_seq_length", "64",
        "--max_steps", "80",
        "--learning_rate", "2e-3",
        "--logging_steps", "5",
        "--eval_strategy", "no",
        "--save_strategy", "no",
        "--output_dir", str(tmp_path),
        cwd=tmp_path,
    )  # fmt: skip
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    metrics = json.loads((tmp_path / "eval_results.json").read_text())
    assert metrics["eval_mlm_perplexity"] < 1000 and "eval_nsp_accuracy" in metrics
    assert json.loads((tmp_path / "config.json").read_text())["sparse_prediction"] is True
    # the pictures and the model card the example ends with
    assert (tmp_path / "plots" / "attention_self_attention.png").stat().st_size > 5000
    assert "AutoModelForPreTraining" in (tmp_path / "README.md").read_text()
    result = run_without_hf_scratch(
        f"""
        import transformers
        folder = {str(tmp_path)!r}
        for name in ["AutoModel", "AutoModelForPreTraining", "AutoModelForMaskedLM",
                     "AutoModelForSequenceClassification", "AutoModelForQuestionAnswering"]:
            model = getattr(transformers, name).from_pretrained(folder, trust_remote_code=True)
            print("loaded", name, type(model).__name__)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        model = transformers.AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)
        inputs = tokenizer("the return value is [MASK].", return_tensors="pt")
        print("logits", tuple(model(**inputs).logits.shape))
        """,
        cwd=tmp_path,
    )
    assert result.stdout.count("loaded") == 5 and "logits (1, " in result.stdout


@pytest.mark.parametrize("model_class", [ScratchBertForMaskedLM, ScratchBertForPreTraining])
def test_gradient_accumulation_gives_the_update_of_one_large_batch(tmp_path, model_class):
    from conftest import assert_accumulation_matches_one_large_batch

    torch.manual_seed(0)
    dataset = []
    # MaskedLM: different numbers of masked positions per row, exact through num_items_in_batch.
    # PreTraining averages its two mean losses over micro-batches (accepts_loss_kwargs = False),
    # which equals one large batch when the micro-batches hold equally many masked positions.
    counts = (1, 5, 2, 7, 3, 1, 4, 6) if model_class is ScratchBertForMaskedLM else (3,) * 8
    for count in counts:
        input_ids = torch.randint(5, 99, (12,))
        labels = torch.full_like(input_ids, -100)
        labels[:count] = input_ids[:count]
        row = {"input_ids": input_ids, "labels": labels}
        if model_class is ScratchBertForPreTraining:
            row["next_sentence_label"] = torch.tensor(count % 2)
        dataset.append(row)
    assert_accumulation_matches_one_large_batch(
        lambda: model_class(tiny_bert_config()), dataset, tmp_path
    )


@pytest.mark.slow
@pytest.mark.parametrize("task", ["SST-2", "MRPC"])
def test_fine_tuning_example_on_glue(tmp_path, task):
    import json

    from conftest import run_example, run_without_hf_scratch

    from hf_scratch.tokenization import train_wordpiece

    pretrained = tmp_path / "pretrained"
    texts = [line for line in (GLUE_DIR / task / "train.tsv").read_text().splitlines()[:2000]]
    train_wordpiece(texts, 600, show_progress=False).save_pretrained(pretrained)
    config = tiny_bert_config(vocab_size=600, max_position_embeddings=128)
    ScratchBertForPreTraining(config).save_pretrained(pretrained)
    run_example(
        "finetune_bert.py",
        "--model_name_or_path", str(pretrained),
        "--task", task,
        "--max_train_samples", "64",
        "--max_eval_samples", "64",
        "--num_train_epochs", "5",
        "--per_device_train_batch_size", "8",
        "--learning_rate", "1e-3",
        "--logging_steps", "4",
        "--output_dir", str(tmp_path / "out"),
        cwd=tmp_path,
    )  # fmt: skip
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    metrics = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert {"eval_accuracy", "eval_f1"} <= set(metrics)  # values: test_metrics_on_a_known_batch
    result = run_without_hf_scratch(
        f"""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        folder = {str(tmp_path / "out")!r}
        model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        print("labels", model(**tokenizer("a fine film", return_tensors="pt")).logits.shape[-1])
        """,
        cwd=tmp_path,
    )
    assert "labels 2" in result.stdout


def test_attentions_hidden_states_and_checkpointing():
    model = ScratchBertForPreTraining(tiny_bert_config())
    batch = _batch()
    output = model(**batch, output_attentions=True, output_hidden_states=True)
    assert len(output.attentions) == 2 and output.attentions[0].shape == (3, 4, 11, 11)
    assert len(output.hidden_states) == 3
    # padding keys get no weight; the encoder is bidirectional (weights above the diagonal)
    assert (output.attentions[0][1, :, :, 8:] == 0).all()
    assert (output.attentions[0][0].triu(1) > 0).any()
    labels = torch.where(batch["input_ids"] % 5 == 0, batch["input_ids"], -100)
    nsp = torch.tensor([0, 1, 0])
    model(**batch, labels=labels, next_sentence_label=nsp).loss.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.activation_checkpointing_enable()
    model(**batch, labels=labels, next_sentence_label=nsp).loss.backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[name], msg=name)


@pytest.mark.parametrize(
    ("dtype", "tolerance"), [(torch.float16, 0.01), (torch.bfloat16, 0.05)], ids=["fp16", "bf16"]
)
def test_half_precision_is_close_to_float32(dtype, tolerance):
    """Pre-training logits and loss in half precision within `tolerance` of float32's (relative to
    the largest logit), sparse prediction, padded batch."""
    model = ScratchBertForPreTraining(tiny_bert_config(sparse_prediction=True)).eval()
    batch = _batch()
    labels = torch.where(batch["input_ids"] % 4 == 0, batch["input_ids"], -100)
    targets = dict(labels=labels, next_sentence_label=torch.tensor([0, 1, 1]))
    with torch.no_grad():
        expected = model(**batch, **targets)
        output = model.to(dtype)(**batch, **targets)
    assert output.prediction_logits.dtype == dtype
    for name in ("prediction_logits", "seq_relationship_logits"):
        ours, reference = getattr(output, name).float(), getattr(expected, name)
        error, scale = (ours - reference).abs().max(), reference.abs().max()
        assert error <= tolerance * scale, (name, error, scale)
    torch.testing.assert_close(output.loss.float(), expected.loss, rtol=tolerance, atol=0)
