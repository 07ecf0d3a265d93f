"""Multi-head self-attention: ours (eager and sdpa) against torch.nn.MultiheadAttention on the same
weights.

    python benchmarks/bench_attention.py [--repeats 15] [--smoke]

Forward is inference (eval mode, no grad: nn.MultiheadAttention then takes its fused native fast
path); forward+backward is a training-mode pass with the gradient of a sum. Batch 8, sequence 128
and 512, hidden 256 (4 heads) and 768 (12 heads), no mask. Prints milliseconds (medians of
interleaved repetitions) and the ratio reference time / our time (> 1 means ours is faster), then
the fp32 and bf16 matmul peaks of this machine (2048^3).

`--smoke` checks that it runs: every measurement once, at the tiny sizes of `TINY` (and a 256^3
matmul peak); the numbers mean nothing.
"""

from dataclasses import dataclass

import torch
from common import (
    benchmark_arguments,
    interleaved_medians,
    matmul_peak_gflops,
    matmul_peak_size,
    parse,
    print_table,
    smoke_or,
)
from torch import nn
from transformers import PreTrainedConfig

from hf_scratch.attention import MultiHeadAttention


@dataclass(frozen=True)
class Sizes:
    shapes: tuple[tuple[int, int], ...]  # (hidden size, heads)
    lengths: tuple[int, ...]  # sequence lengths


FULL = Sizes(shapes=((256, 4), (768, 12)), lengths=(128, 512))
TINY = Sizes(shapes=((32, 2), (64, 4)), lengths=(16, 32))  # --smoke


def build(hidden_size: int, num_heads: int, implementation: str) -> MultiHeadAttention:
    config = PreTrainedConfig(
        hidden_size=hidden_size,
        num_attention_heads=num_heads,
        attention_probs_dropout_prob=0.0,
        attn_implementation=implementation,
    )
    return MultiHeadAttention(config)


def copy_into_reference(ours: MultiHeadAttention, reference: nn.MultiheadAttention) -> None:
    with torch.no_grad():
        reference.in_proj_weight.copy_(ours.qkv_proj.weight)
        reference.in_proj_bias.copy_(ours.qkv_proj.bias)
        reference.out_proj.weight.copy_(ours.out_proj.weight)
        reference.out_proj.bias.copy_(ours.out_proj.bias)


def forward_pass(module: nn.Module, x: torch.Tensor):
    if isinstance(module, nn.MultiheadAttention):
        return lambda: module(x, x, x, need_weights=False)
    return lambda: module(x)


def forward_backward(module: nn.Module, x: torch.Tensor):
    step = forward_pass(module, x)

    def run():
        module.zero_grad(set_to_none=True)
        step()[0].sum().backward()

    return run


def main() -> None:
    parser = benchmark_arguments(__doc__.split("\n")[0], default_repeats=15)
    parser.add_argument("--batch", type=int, default=8)
    args = parse(parser)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32\n")

    sizes = smoke_or(FULL, TINY)
    rows = []
    for hidden_size, num_heads in sizes.shapes:
        for seq_len in sizes.lengths:
            ours_sdpa = build(hidden_size, num_heads, "sdpa")
            ours_eager = build(hidden_size, num_heads, "eager")
            ours_eager.load_state_dict(ours_sdpa.state_dict())
            reference = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
            copy_into_reference(ours_sdpa, reference)
            modules = {"nn.MHA": reference, "sdpa": ours_sdpa, "eager": ours_eager}
            x = torch.randn(args.batch, seq_len, hidden_size)

            for module in modules.values():
                module.eval()
            with torch.no_grad():
                forward = interleaved_medians(
                    {name: forward_pass(m, x) for name, m in modules.items()}, args.repeats
                )
            for module in modules.values():
                module.train()
            x_grad = x.clone().requires_grad_()
            backward = interleaved_medians(
                {name: forward_backward(m, x_grad) for name, m in modules.items()}, args.repeats
            )
            for label, times in [("forward", forward), ("fwd+bwd", backward)]:
                rows.append(
                    [
                        label,
                        f"{hidden_size}/{num_heads}",
                        seq_len,
                        times["nn.MHA"] * 1e3,
                        times["sdpa"] * 1e3,
                        times["eager"] * 1e3,
                        times["nn.MHA"] / times["sdpa"],
                        times["nn.MHA"] / times["eager"],
                    ]
                )
    print_table(
        [
            "pass",
            "hidden/heads",
            "seq",
            "nn.MHA ms",
            "sdpa ms",
            "eager ms",
            "ratio sdpa",
            "ratio eager",
        ],
        rows,
    )
    print()
    print_table(
        ["dtype", f"matmul peak GFLOP/s ({matmul_peak_size()}^3)"],
        [
            ["float32", matmul_peak_gflops(torch.float32)],
            ["bfloat16", matmul_peak_gflops(torch.bfloat16)],
        ],
    )


if __name__ == "__main__":
    main()
