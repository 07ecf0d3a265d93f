"""Pre-train GPT on the language-modelling objective L1 = sum_i log P(u_i | u_{i-k}, ..., u_{i-1}).

    python examples/pretrain_gpt.py                  # embedded corpus, a few minutes
    python examples/pretrain_gpt.py --train_file corpus.txt --output_dir outputs/my-gpt
    python examples/pretrain_gpt.py --train_file ../shared/data/tinyshakespeare/input.txt \
        --tokenizer_type char --output_dir outputs/shakespeare-char    # nanoGPT's classic
    python examples/pretrain_gpt.py --model_name_or_path outputs/gpt-pydoc --do_eval \
        --output_dir outputs/gpt-pydoc-eval                             # evaluate only
    accelerate launch examples/pretrain_gpt.py --dataset_name wikitext \
        --dataset_config_name wikitext-103-raw-v1 --streaming --max_steps 20000 \
        --config_name configuration/gpt-1

With no data argument it trains on the text of Python's documentation (`pydoc_data.topics`, shipped
with Python), so it runs offline. Without `--tokenizer_name` it first trains a tokenizer on the
training split: byte-level BPE (`--tokenizer_type bpe`, GPT-2's) or one token per character
(`char`). Text is cut into blocks of `--block_size` tokens; the Trainer trains, reports perplexity
exp(L1) on the held-out split, and the model and tokenizer are saved with `save_pretrained`
(safetensors, with the model's source files, so the folder loads with
`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` without hf_scratch
installed). `--do_train` / `--do_eval` run only the stages named (both when neither is);
`--streaming` reads a corpus larger than memory as training consumes it. Every
`TrainingArguments` option works (`--max_steps`, `--learning_rate`, `--bf16`,
`--resume_from_checkpoint`, ...).
"""

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from transformers import (
    AutoModelForCausalLM,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

import hf_scratch  # noqa: F401  (registers the hf_scratch model types with the Auto classes)
from hf_scratch.data import (
    CorpusArguments,
    describe_sizes,
    group_texts,
    load_corpus,
    map_rows,
    map_splits,
)
from hf_scratch.tokenization import train_byte_level_bpe, train_characters
from hf_scratch.training import (
    PretrainingModelArguments,
    ScratchTrainer,
    load_or_train_tokenizer,
    model_is_sharded,
    parse_arguments,
    pretraining_model,
    save_and_share,
    stage_splits,
    tokenizer_training_texts,
    train_and_evaluate,
)

REPO = Path(__file__).resolve().parents[1]


@dataclass
class ModelArguments(PretrainingModelArguments):
    config_name: str = field(default=str(REPO / "configuration" / "gpt-small"))
    tokenizer_type: Literal["bpe", "char"] = field(
        default="bpe",
        metadata={"help": "the tokenizer trained without --tokenizer_name: bpe or char"},
    )
    tokenizer_vocab_size: int = field(default=4096, metadata={"help": "of the BPE tokenizer"})


@dataclass
class DataArguments:
    block_size: int = field(default=128, metadata={"help": "tokens per training sequence"})
    num_samples: int = field(default=3, metadata={"help": "texts to generate after training"})
    sample_prompts: str = field(
        default="The return value|A class|If the",
        metadata={"help": "'|'-separated prompts for the generated samples"},
    )
    max_new_tokens: int = field(default=40)


# Defaults of this script, before the user's own arguments (argparse keeps the last value given).
DEFAULT_ARGUMENTS = [
    "--output_dir", "outputs/gpt-pydoc",
    "--num_train_epochs", "8",
    "--per_device_train_batch_size", "16",
    "--per_device_eval_batch_size", "16",
    "--learning_rate", "1e-3",
    "--lr_scheduler_type", "cosine",
    "--warmup_steps", "30",
    "--weight_decay", "0.01",
    "--logging_steps", "20",
    "--eval_strategy", "epoch",
    "--save_strategy", "epoch",
    "--save_total_limit", "1",
    "--report_to", "none",
    "--seed", "0",
]  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, float]:
    model_args, corpus_args, data_args, training_args = parse_arguments(
        (ModelArguments, CorpusArguments, DataArguments, TrainingArguments), DEFAULT_ARGUMENTS, argv
    )
    if corpus_args.streaming and training_args.do_train and training_args.max_steps <= 0:
        raise ValueError("--streaming needs --max_steps: a stream has no length to count epochs")
    set_seed(training_args.seed)
    raw = load_corpus(corpus_args, seed=training_args.seed)
    column = corpus_args.text_column
    tokenizer = load_or_train_tokenizer(
        model_args.tokenizer_name or model_args.model_name_or_path,
        training_args,
        lambda: tokenizer_training_texts(raw["train"], column, model_args.tokenizer_train_rows),
        train_characters
        if model_args.tokenizer_type == "char"
        else partial(train_byte_level_bpe, vocab_size=model_args.tokenizer_vocab_size),
        data=corpus_args.describe()[0],
        trust_remote_code=model_args.trust_remote_code,
    )
    model = pretraining_model(AutoModelForCausalLM, model_args, tokenizer)
    if data_args.block_size > model.config.max_position_embeddings:
        raise ValueError(
            f"block_size {data_args.block_size} exceeds the model's max_position_embeddings "
            f"({model.config.max_position_embeddings})"
        )

    # A document ends with the end-of-text token, so blocks that span two documents mark the seam;
    # the lines of a text file run on, their line breaks kept.
    end = tokenizer.eos_token if corpus_args.rows_are_documents else ""

    def tokenize(batch):
        return tokenizer([text + end for text in batch[column]])

    workers = corpus_args.preprocessing_num_workers
    with training_args.main_process_first(desc="tokenizing and grouping"):
        tokenized = map_splits(raw, stage_splits(training_args), tokenize, "tokenizing", workers)
        blocks = {
            split: map_rows(
                rows,
                group_texts,
                f"{split}: blocks of {data_args.block_size} tokens",
                workers,
                fn_kwargs={"block_size": data_args.block_size},
            )
            for split, rows in tokenized.items()
        }
    blocks = corpus_args.limit(blocks)
    print(
        f"{describe_sizes(blocks)} blocks of {data_args.block_size} tokens; model with "
        f"{model.num_parameters():,} parameters"
    )

    trainer = ScratchTrainer(
        model=model,
        args=training_args,
        train_dataset=blocks.get("train"),
        eval_dataset=blocks.get("validation"),
        data_collator=default_data_collator,
        processing_class=tokenizer,
    )
    metrics = train_and_evaluate(trainer, perplexity=True)
    if not training_args.do_train:
        return metrics
    prompt = data_args.sample_prompts.split("|")[0]
    save_and_share(trainer, *corpus_args.describe(), plot_text=prompt)

    if trainer.is_world_process_zero() and data_args.num_samples > 0:
        if model_is_sharded(trainer):  # generate() on one process would wait for the others
            print("samples skipped: the model is sharded; generate from the saved folder")
        else:
            print_samples(trainer.model, tokenizer, data_args)
    return metrics


def print_samples(model, tokenizer, data_args) -> None:
    model.eval()
    prompts = data_args.sample_prompts.split("|")[: data_args.num_samples]
    for prompt in prompts:
        inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
        with torch.no_grad():
            output = model.generate(
                **inputs,
                max_new_tokens=data_args.max_new_tokens,
                do_sample=True,
                top_k=40,
                temperature=0.8,
                pad_token_id=tokenizer.pad_token_id,
            )
        print(f"--- {prompt!r}\n{tokenizer.decode(output[0], skip_special_tokens=True)}\n")


if __name__ == "__main__":
    main()
