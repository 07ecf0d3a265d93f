"""Cross-entropy over a large vocabulary, lean in memory, shared by the three models' heads.

The logits of a language model are its largest activation ((B, T, V) with V in the tens of
thousands). `torch.nn.functional.cross_entropy` keeps a second tensor of that size (the
log-probabilities) for the backward pass and allocates two more while going back. `cross_entropy`
below keeps only the per-row log-sum-exp, lse = log sum_j exp(z_j), and forms the gradient
softmax(z) - target directly, working through the rows in blocks of a few megabytes so that its
temporaries stay in memory the allocator reuses.

With label smoothing eps (Szegedy et al. 2016; the Transformer uses eps = 0.1) the target
distribution is (1 - eps) * onehot(y) + eps / V, so per row
    loss = (1 - eps) * (lse - z_y) + eps * (lse - mean_j z_j),   d loss / dz = softmax(z) - target.
"""

import torch

# Rows per block: about 4M logits (16 MB in float32), so that the loss's temporaries stay a few
# megabytes however large the batch and the vocabulary. Any block size gives the same values.
_BLOCK_ELEMENTS = 1 << 22


def _row_blocks(num_rows: int, vocab_size: int, rows: torch.Tensor | None):
    """Indices of the row blocks to visit: slices of 0..num_rows-1 when `rows` is None, else
    consecutive pieces of the index `rows`."""
    size = max(1, _BLOCK_ELEMENTS // vocab_size)
    if rows is None:
        for start in range(0, num_rows, size):
            yield slice(start, min(start + size, num_rows))
    else:
        for start in range(0, len(rows), size):
            yield rows[start : start + size]


def _labelled_rows(valid: torch.Tensor) -> torch.Tensor | None:
    """The rows the loss visits: all (None) when most rows carry a label (a language model's
    labels), else only the labelled ones (the 15% of a masked LM), gathered block by block: the
    other rows' log-sum-exp is never needed, and their gradient is zero."""
    count = int(valid.sum())
    return None if 2 * count > valid.numel() else valid.nonzero().squeeze(1)


class _CrossEntropySum(torch.autograd.Function):
    """Sum over rows with a label of the (label-smoothed) cross-entropy of logits (N, V)."""

    @staticmethod
    def forward(ctx, logits, labels, ignore_index: int, label_smoothing: float):
        N, V = logits.shape
        valid = labels != ignore_index  # (N,)
        safe_labels = labels.masked_fill(~valid, 0)
        rows = _labelled_rows(valid)
        lse = torch.zeros(N, dtype=torch.float32, device=logits.device)
        mean_logits = torch.zeros_like(lse) if label_smoothing > 0 else None
        for index in _row_blocks(N, V, rows):
            block = logits[index].float()  # (n, V); a copy of the gathered rows
            lse[index] = torch.logsumexp(block, dim=-1)
            if mean_logits is not None:
                mean_logits[index] = block.mean(dim=-1)
        label_logits = logits.gather(1, safe_labels[:, None]).squeeze(1).float()  # z_y: (N,)
        losses = (1.0 - label_smoothing) * (lse - label_logits)
        if mean_logits is not None:
            losses = losses + label_smoothing * (lse - mean_logits)
        ctx.save_for_backward(logits, safe_labels, valid, lse, rows)
        ctx.label_smoothing = label_smoothing
        return losses.masked_fill(~valid, 0.0).sum()

    @staticmethod
    def backward(ctx, grad_output):
        logits, labels, valid, lse, rows = ctx.saved_tensors
        eps = ctx.label_smoothing
        N, V = logits.shape
        # The gradient of the sum is s * (softmax(z) - target) with s = grad_output on labelled
        # rows and 0 elsewhere. |s| * softmax(z) = exp(z - (lse - log |s|)) (exp(-inf) = 0 where
        # s = 0): the scale rides on the exponential instead of costing one more pass over the
        # block; only a negative s (a negated loss) needs its sign applied afterwards.
        magnitude = valid.float() * grad_output.abs()  # (N,)
        shift = lse - magnitude.log()  # (N,)
        negative = bool(grad_output < 0)
        # Visiting every row, the gradient is formed in its own rows; visiting the labelled ones,
        # the others stay zero.
        in_place = rows is None and logits.dtype == torch.float32
        grad_logits = torch.empty_like(logits) if rows is None else torch.zeros_like(logits)
        for index in _row_blocks(N, V, rows):
            if in_place:
                gradient = torch.sub(logits[index], shift[index, None], out=grad_logits[index])
            else:
                gradient = logits[index].float() - shift[index, None]
            gradient.exp_()  # |s| softmax(z): (n, V)
            scale = magnitude[index]  # (n,)
            if eps > 0:
                gradient.sub_(scale[:, None] * (eps / V))
            label_rows = torch.arange(gradient.shape[0], device=gradient.device)
            gradient[label_rows, labels[index]] -= scale * (1.0 - eps)
            if negative:
                gradient.neg_()
            if not in_place:
                grad_logits[index] = gradient
        return grad_logits, None, None, None


def cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of logits (..., V) against labels (...), over the positions whose label is
    not `ignore_index`; equal to `F.cross_entropy(logits, labels, label_smoothing=...)` in value and
    gradient.

    Under gradient accumulation the Trainer passes `num_items_in_batch`, the number of labelled
    positions in the whole accumulated batch: the sum is divided by it instead of by this
    micro-batch's count, so that the accumulated gradient equals the gradient of one large batch.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1])  # (N, V), a view when logits are contiguous
    flat_labels = labels.reshape(-1).to(flat_logits.device)
    if torch.compiler.is_compiling():
        # The compiler fuses the plain formula itself, and cannot trace the row selection below
        # (how many rows carry a label is data).
        total = torch.nn.functional.cross_entropy(
            flat_logits.float(),
            flat_labels,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            reduction="sum",
        )
    else:
        total = _CrossEntropySum.apply(flat_logits, flat_labels, ignore_index, label_smoothing)
    if num_items_in_batch is None:
        num_items_in_batch = (flat_labels != ignore_index).sum().clamp(min=1)
    elif isinstance(num_items_in_batch, torch.Tensor):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def causal_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    shift_labels: torch.Tensor | None = None,
    ignore_index: int = -100,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """L1 = -sum_i log P(u_i | u_<i) (GPT, §3.1), mean over predicted tokens: the logits at position
    i predict the label at position i + 1. The labels are shifted (with an ignored last position)
    rather than the logits, which would copy the largest tensor of the model. `shift_labels`,
    transformers' name for labels already shifted (position i holds the token i predicts, as
    packing and context-parallel collators give them), are used as they are instead."""
    shifted_labels = shift_labels
    if shifted_labels is None:
        shifted_labels = torch.nn.functional.pad(labels[..., 1:], (0, 1), value=ignore_index)
    return cross_entropy(
        logits, shifted_labels, ignore_index=ignore_index, num_items_in_batch=num_items_in_batch
    )


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, config) -> torch.Tensor:
    """The loss of a sequence-level head, chosen as Hugging Face's `config.problem_type` chooses it:
    "regression" (num_labels = 1: mean squared error), "single_label_classification" (integer
    labels: cross-entropy) or "multi_label_classification" (multi-hot float labels: binary
    cross-entropy per label). When unset, it is inferred from `num_labels` and the labels' dtype, as
    in transformers."""
    problem_type = config.problem_type
    if problem_type is None:
        if config.num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type == "regression":
        return torch.nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype).view(-1))
    if problem_type == "single_label_classification":
        return torch.nn.functional.cross_entropy(
            logits.view(-1, config.num_labels), labels.view(-1)
        )
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
