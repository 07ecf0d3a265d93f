"""Attention at work in a few seconds on a CPU: a one-layer, one-head self-attention model learns to
reverse a sentence, and prints its attention weights, which form the anti-diagonal that reversing
needs.

    python examples/attention_demo.py [--steps 400] [--sentence "the cat sat on the mat all day"]

Each output position i must copy the input word at position T-1-i, so the only way to solve the task
is to attend there: the weight table shows which input word (column) each output position (row)
reads. Built from the package's own parts: token embeddings + sinusoidal positions (§3.5) -> one
residual block of multi-head self-attention and feed-forward (§3.1) -> a vocabulary projection.
"""

import argparse

import torch
from torch import nn
from transformers import PreTrainedConfig

from hf_scratch.layers import SinusoidalPositionEmbedding, TransformerBlock

WORDS = [
    "the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "log",
    "all", "day", "night", "quickly", "slowly", "red", "big", "small", "bird", "tree",
]  # fmt: skip
LENGTH = 8


class Reverser(nn.Module):
    def __init__(self, vocab_size: int, hidden_size: int = 64):
        super().__init__()
        config = PreTrainedConfig(
            hidden_size=hidden_size,
            num_attention_heads=1,
            intermediate_size=4 * hidden_size,
            hidden_act="relu",
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            layer_norm_eps=1e-5,
            attn_implementation="eager",
        )
        self.embed_tokens = nn.Embedding(vocab_size, hidden_size)
        self.embed_positions = SinusoidalPositionEmbedding(LENGTH, hidden_size)
        self.block = TransformerBlock(config, is_causal=False)
        self.output = nn.Linear(hidden_size, vocab_size)

    def forward(self, input_ids: torch.Tensor, output_attentions: bool = False):
        positions = torch.arange(input_ids.shape[1])[None, :]
        hidden = self.embed_tokens(input_ids) + self.embed_positions(positions)  # (B, T, C)
        hidden, attn_weights, _ = self.block(hidden, output_attentions=output_attentions)
        return self.output(hidden), attn_weights  # (B, T, V), (B, 1, T, T)


def print_weight_table(words: list[str], weights: torch.Tensor) -> None:
    """Rows: output positions (the word they should produce); columns: the input words they attend
    to."""
    width = max(4, *(len(w) for w in words)) + 2
    label = width + 6
    print(" " * label + "".join(w.rjust(width) for w in words))
    for i, row in enumerate(weights):
        target = words[len(words) - 1 - i]
        print(f"out {i} {target}".ljust(label) + "".join(f"{w:{width}.2f}" for w in row.tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--sentence", default="the cat sat on the mat all day")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sentence = args.sentence.split()
    if len(sentence) != LENGTH or any(w not in WORDS for w in sentence):
        parser.error(f"the sentence needs {LENGTH} words from: {' '.join(WORDS)}")

    torch.manual_seed(args.seed)
    model = Reverser(len(WORDS))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(1, args.steps + 1):
        input_ids = torch.randint(len(WORDS), (64, LENGTH))
        logits, _ = model(input_ids)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), input_ids.flip(1).flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"step {step:4d}  loss {loss.item():.4f}")

    model.eval()
    with torch.no_grad():
        test_ids = torch.randint(len(WORDS), (1000, LENGTH))
        accuracy = (model(test_ids)[0].argmax(-1) == test_ids.flip(1)).float().mean().item()
        input_ids = torch.tensor([[WORDS.index(w) for w in sentence]])
        logits, attn_weights = model(input_ids, output_attentions=True)
    print(f"\nword accuracy on 1000 random sentences: {accuracy:.1%}")
    print(f"reversed: {' '.join(WORDS[i] for i in logits.argmax(-1)[0].tolist())}\n")
    print("attention weights (row: output position, column: input word)")
    print_weight_table(sentence, attn_weights[0, 0])


if __name__ == "__main__":
    main()
