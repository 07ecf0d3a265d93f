"""Sharing a trained model: the model card (README.md) written next to the weights and pushed to the
hub with them.

The card says what the model is (paper, architecture, configuration), what it was trained on and
for how long, how it scored, and how to load it where hf_scratch is not installed: the saved folder
carries the model's source files and an `auto_map`, so transformers' Auto classes load it with
`trust_remote_code=True`. Training details come from the Trainer (transformers' own
`extract_hyperparameters_from_trainer` and `parse_log_history`, the same ones as its draft card).
"""

import json
from pathlib import Path

import torch
import transformers
from huggingface_hub import ModelCard, ModelCardData
from transformers.modelcard import (
    extract_hyperparameters_from_trainer,
    make_markdown_table,
    parse_log_history,
)

# What each model type is, for a reader of the card.
FAMILIES = {
    "hf_scratch_transformer": (
        "the Transformer encoder-decoder",
        "Vaswani et al. 2017, [Attention Is All You Need](https://arxiv.org/abs/1706.03762)",
    ),
    "hf_scratch_gpt": (
        "GPT, a decoder-only language model",
        "Radford et al. 2018, [Improving Language Understanding by Generative Pre-Training]"
        "(https://cdn.openai.com/research-covers/language-unsupervised/language_understanding_paper.pdf)",
    ),
    "hf_scratch_bert": (
        "BERT, a bidirectional encoder",
        "Devlin et al. 2019, [BERT: Pre-training of Deep Bidirectional Transformers for Language "
        "Understanding](https://arxiv.org/abs/1810.04805)",
    ),
}

# The hub's pipeline tag and a few lines that use the model, per Auto class of the saved head.
USAGE = {
    "AutoModelForCausalLM": (
        "text-generation",
        'inputs = tokenizer("Once upon a time", return_tensors="pt")\n'
        "output = model.generate(**inputs, max_new_tokens=40, do_sample=True, top_k=40)\n"
        "print(tokenizer.decode(output[0], skip_special_tokens=True))",
    ),
    "AutoModelForSeq2SeqLM": (
        "translation",
        'inputs = tokenizer("A man is riding a bicycle.", return_tensors="pt")\n'
        "output = model.generate(**inputs)  # beam search settings: generation_config.json\n"
        "print(tokenizer.decode(output[0], skip_special_tokens=True))",
    ),
    "AutoModelForMaskedLM": (
        "fill-mask",
        'inputs = tokenizer(f"The capital of France is {tokenizer.mask_token}.", '
        'return_tensors="pt")\n'
        "logits = model(**inputs).logits\n"
        "position = (inputs.input_ids[0] == tokenizer.mask_token_id).nonzero()[0, 0]\n"
        "print(tokenizer.decode(logits[0, position].argmax()))",
    ),
    "AutoModelForPreTraining": (
        "fill-mask",
        'inputs = tokenizer(f"The capital of France is {tokenizer.mask_token}.", '
        'return_tensors="pt")\n'
        "logits = model(**inputs).prediction_logits\n"
        "position = (inputs.input_ids[0] == tokenizer.mask_token_id).nonzero()[0, 0]\n"
        "print(tokenizer.decode(logits[0, position].argmax()))",
    ),
    "AutoModelForSequenceClassification": (
        "text-classification",
        'inputs = tokenizer("A gripping, beautifully acted film.", return_tensors="pt")\n'
        "print(model.config.id2label[model(**inputs).logits.argmax(-1).item()])",
    ),
}

# The configuration fields the card lists, in this order, when the config has them.
ARCHITECTURE_FIELDS = (
    "vocab_size",
    "max_position_embeddings",
    "num_hidden_layers",
    "encoder_layers",
    "decoder_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "norm_first",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "label_smoothing",
    "lm_loss_weight",
)


def model_card(
    trainer, dataset: str, dataset_id: str | None = None, model_name: str | None = None
) -> ModelCard:
    """The card of `trainer.model` after training: description, architecture, training data
    (`dataset`, a description; `dataset_id`, its hub id if it has one) and hyperparameters, the
    validation curve and the final results of every split evaluated (`all_results.json` in the
    output folder), and how to load it."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    config = model.config
    output_dir = Path(trainer.args.output_dir)
    name = model_name or trainer.args.hub_model_id or output_dir.name
    auto_class = getattr(model, "_auto_class", None) or "AutoModel"
    pipeline_tag, example = USAGE.get(auto_class, (None, "outputs = model(**inputs)"))
    family, paper = FAMILIES.get(config.model_type, (config.model_type, ""))

    results_file = output_dir / "all_results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    final_results = {
        key: value
        for key, value in results.items()
        if key != "epoch" and not key.endswith(("runtime", "per_second"))
    }
    _, validation_curve, _ = parse_log_history(trainer.state.log_history)
    hyperparameters = extract_hyperparameters_from_trainer(trainer)
    hyperparameters["optimizer steps done"] = trainer.state.global_step
    hyperparameters["epochs done"] = round(trainer.state.epoch or 0.0, 2)

    architecture = "\n".join(
        f"| `{field}` | {getattr(config, field)} |"
        for field in ARCHITECTURE_FIELDS
        if field in config.to_dict()
    )
    repository = trainer.args.hub_model_id or f"path/to/{output_dir.name}"
    card_data = ModelCardData(
        library_name="transformers",
        tags=["hf_scratch", config.model_type, "custom_code"],
        datasets=[dataset_id] if dataset_id else None,
        pipeline_tag=pipeline_tag,
    )
    content = f"""---
{card_data.to_yaml()}
---

# {name}

{family[0].upper()}{family[1:]} ({paper}), written from scratch in PyTorch with hf_scratch
and trained with the transformers `Trainer`.
Class `{type(model).__name__}`, {model.num_parameters():,} parameters.

## Load it

The folder carries its own modelling code, so only `transformers` and `torch` are needed:

```python
from transformers import AutoTokenizer, {auto_class}

tokenizer = AutoTokenizer.from_pretrained("{repository}")
model = {auto_class}.from_pretrained("{repository}", trust_remote_code=True).eval()
{example}
```

`config.auto_map` also lists {", ".join(f"`{name}`" for name in config.auto_map or {})}.

## Architecture

| field | value |
|---|---|
{architecture}

The full configuration is in `config.json`.

## Training

Data: {dataset}.

| hyperparameter | value |
|---|---|
{chr(10).join(f"| {key} | {value} |" for key, value in hyperparameters.items())}

{_section("Validation during training", make_markdown_table(validation_curve))}
{_section("Pictures", _pictures(output_dir))}
{_section("Results", _results_table(final_results))}
## Framework versions

transformers {transformers.__version__}, torch {torch.__version__}.
"""
    return ModelCard(content)


def _section(title: str, body: str) -> str:
    return f"## {title}\n\n{body}\n" if body else ""


def _pictures(output_dir: Path) -> str:
    """Links to the PNG files `plotting.write_run_plots` left in plots/."""
    return "\n\n".join(
        f"![{path.stem.replace('_', ' ')}](plots/{path.name})"
        for path in sorted((output_dir / "plots").glob("*.png"))
    )


def _results_table(results: dict) -> str:
    if not results:
        return ""
    rows = "\n".join(f"| {key} | {value:.4g} |" for key, value in sorted(results.items()))
    return f"| metric | value |\n|---|---|\n{rows}"


def write_model_card(
    trainer, dataset: str, dataset_id: str | None = None, model_name: str | None = None
) -> Path:
    """`model_card(...)` saved as README.md in the Trainer's output folder (main process only)."""
    path = Path(trainer.args.output_dir) / "README.md"
    if trainer.is_world_process_zero():
        model_card(trainer, dataset, dataset_id, model_name).save(path)
    return path
