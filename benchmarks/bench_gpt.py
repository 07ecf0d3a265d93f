"""GPT: hf_scratch against transformers' OpenAI GPT (GPT-1 layout) and GPT-2 (sdpa), same weights.

    python benchmarks/bench_gpt.py [--repeats N] [--smoke] [--section NAME]

Each pair is built from one reference model and converted with `hf_scratch.convert.from_reference`,
so ours and the reference hold identical weights; their repetitions are interleaved and medians
reported (fp32, CPU). Ratios are ours/reference in throughput (> 1: ours is faster) and in memory
(< 1: ours uses less).
- Training step (forward, backward, AdamW step) on the small config: 4 layers, hidden 256, 4 heads,
  sequence 128, batch 8, the reference's vocabulary (40,478 / 50,257). Model FLOPs utilization (MFU)
  is against the fp32 matmul peak measured here. Memory is the peak resident memory a step adds over
  the resident memory before it (activations, gradients, temporaries; weights and optimizer state
  excluded, being the same for both), read from /proc (Linux).
- Inference forward at GPT-1 size (12 layers, hidden 768), batch 8, sequence 128.
- `generate()`: greedy, 64 new tokens after a 32-token prompt, batch 1 and 8, small config, no
  end-of-sequence token (so that both always generate 64 tokens).

`--smoke` checks that it runs and that both models generate the same tokens: every section once, in
one process, at the tiny sizes of `TINY`; the numbers mean nothing.
"""

from dataclasses import dataclass
from functools import partial

import torch
from common import (
    benchmark_arguments,
    inference_row,
    machine_peak_gflops,
    parse,
    run_sections,
    smoke_or,
    training_rows,
)
from decoding import (
    ctranslate2_decoder,
    decoding_rows,
    memory_bandwidth_gbs,
    print_tables,
    weight_bytes,
)
from transformers import GPT2Config, GPT2LMHeadModel, OpenAIGPTConfig, OpenAIGPTLMHeadModel

from hf_scratch.convert import from_reference


@dataclass(frozen=True)
class Sizes:
    small: dict  # config of training and generate()
    base: dict  # config of the forward pass ("GPT-1 size")
    batch: int  # training and forward
    length: int  # training and forward
    prompt: int  # generate()
    new_tokens: int  # generate()
    generate_batches: tuple[int, ...]


FULL = Sizes(
    small=dict(n_embd=256, n_layer=4, n_head=4),
    base=dict(n_embd=768, n_layer=12, n_head=12),
    batch=8,
    length=128,
    prompt=32,
    new_tokens=64,
    generate_batches=(1, 8),
)
TINY_VOCABULARY = dict(vocab_size=1000, bos_token_id=0, eos_token_id=0)  # GPT-2's ids are 50,256
TINY = Sizes(  # --smoke
    small=dict(n_embd=32, n_layer=2, n_head=2, **TINY_VOCABULARY),
    base=dict(n_embd=64, n_layer=2, n_head=4, **TINY_VOCABULARY),
    batch=2,
    length=16,
    prompt=8,
    new_tokens=8,
    generate_batches=(1, 2),
)


def chosen_sizes() -> Sizes:
    """The sizes of this run: `FULL`, or `TINY` with `--smoke`."""
    return smoke_or(FULL, TINY)


def reference_pair(kind: str, sizes: dict):
    torch.manual_seed(0)
    if kind == "openai-gpt":
        reference = OpenAIGPTLMHeadModel(OpenAIGPTConfig(**sizes))
    else:
        config = GPT2Config(**sizes)
        reference = GPT2LMHeadModel._from_config(config, attn_implementation="sdpa")
    reference.eval()  # built from a config, it starts in training mode (dropout on)
    return from_reference(reference), reference


def forward_flops(config, batch: int, length: int) -> float:
    """Matmul FLOPs of one forward pass: 2 per multiply-add, projections plus QK^T and AV."""
    C, F, L, V = config.n_embd, 4 * config.n_embd, config.n_layer, config.vocab_size
    tokens = batch * length
    projections = 2 * tokens * (L * (4 * C * C + 2 * C * F) + C * V)
    attention = 2 * 2 * batch * L * length * length * C
    return projections + attention


def bench_training(kind: str, peak: float, repeats: int) -> list[list]:
    size = chosen_sizes()
    ours, reference = reference_pair(kind, size.small)
    ours.train()
    reference.train()
    torch.manual_seed(1)
    input_ids = torch.randint(0, reference.config.vocab_size, (size.batch, size.length))
    batch = {"input_ids": input_ids, "labels": input_ids}
    flops = 3 * forward_flops(reference.config, size.batch, size.length)
    label = "OpenAIGPTLMHeadModel" if kind == "openai-gpt" else "GPT2LMHeadModel (sdpa)"
    label = f"train step vs {label}"
    tokens = input_ids.numel()
    differences = LOSS if kind == "gpt2" else f"SDPA (the reference: eager attention); {LOSS}"
    return training_rows(label, ours, reference, batch, tokens, flops, peak, repeats, differences)


def bench_inference(kind: str, peak: float, repeats: int) -> list[list]:
    size = chosen_sizes()
    ours, reference = reference_pair(kind, size.base)
    torch.manual_seed(1)
    input_ids = torch.randint(0, reference.config.vocab_size, (size.batch, size.length))
    calls = {"ours": lambda: ours(input_ids), "reference": lambda: reference(input_ids)}
    flops = forward_flops(reference.config, size.batch, size.length)
    label = f"forward GPT-1 size vs {type(reference).__name__}"
    differences = "implementation only" if kind == "gpt2" else "SDPA (the reference: eager)"
    tokens = input_ids.numel()
    return [inference_row(label, calls, tokens, flops, peak, differences, repeats)]


# Our loss keeps one log-sum-exp per row instead of a log-probability copy of the logits.
LOSS = "lean loss"

# The reference GPT-1 has no KV cache: each step runs the whole prefix again, and its attention is
# the explicit formula. Our rows against it credit those two features, not the implementation.
OPENAI_GPT_FEATURES = {
    "transformers static+compile": None,  # OpenAIGPTLMHeadModel takes no cache
    "ours eager": "KV cache, SDPA (the reference has neither)",
    "ours compiled": "KV cache (static), SDPA, compiled step",
}


def bench_generation(kind: str, repeats: int) -> list[list]:
    size = chosen_sizes()
    ours, reference = reference_pair(kind, size.small)
    # No end-of-sequence token: every run generates exactly `new_tokens` tokens, and neither model
    # pays for the end-of-sequence bookkeeping of generate().
    for model in (ours, reference):
        model.generation_config.eos_token_id = None
    end_of_text = reference.config.eos_token_id
    special = dict(bos_token=end_of_text, eos_token=end_of_text, unk_token=end_of_text)
    ct2 = ctranslate2_decoder(reference, special) if kind == "gpt2" else None  # no GPT-1 loader
    floor_ms = weight_bytes(reference) / memory_bandwidth_gbs() / 1e6
    features = OPENAI_GPT_FEATURES if kind == "openai-gpt" else None
    rows = []
    for batch in size.generate_batches:
        torch.manual_seed(1)
        prompt = torch.randint(0, reference.config.vocab_size, (batch, size.prompt))
        settings = dict(max_new_tokens=size.new_tokens, do_sample=False, pad_token_id=0)
        label = f"{kind} greedy b{batch}"
        inputs = {"input_ids": prompt}
        rows += decoding_rows(
            label, ours, reference, ct2, inputs, settings, repeats, floor_ms, features
        )
    return rows


def main() -> None:
    parser = benchmark_arguments(__doc__.split("\n")[0])
    args = parse(parser)
    repeats = args.repeats
    peak = machine_peak_gflops(args)
    kinds = ("openai-gpt", "gpt2")
    sections = {
        **{f"train {kind}": partial(bench_training, kind, peak, repeats) for kind in kinds},
        **{f"forward {kind}": partial(bench_inference, kind, peak, repeats) for kind in kinds},
        **{f"generate {kind}": partial(bench_generation, kind, repeats) for kind in kinds},
    }
    rows = run_sections(sections, args, peak)
    if args.section is None:
        print_tables(rows)


if __name__ == "__main__":
    main()
