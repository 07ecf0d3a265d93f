"""BERT's masked-LM masking (Devlin et al. 2019, §3.1, Task #1): 15% of the tokens predicted, of
those 80% replaced by [MASK], 10% by a random token, 10% kept; whole-word masking; masks drawn from
each example's own seed so that a resumed or multi-process run masks as an uninterrupted one."""

import hashlib
import math

import torch
from transformers import DataCollatorForLanguageModeling, TrainerCallback


class WholeWordMaskCollator(DataCollatorForLanguageModeling):
    """Masked LM with whole-word masking over WordPiece tokens: a word (a token and the "##"
    continuation tokens after it) is chosen with probability `mlm_probability`, and each token of a
    chosen word is then replaced as in the paper (80% [MASK], 10% random, 10% unchanged), as in
    Google's whole-word-masking BERT release. Works on token ids alone (no offset mapping
    needed)."""

    def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        labels = inputs.clone()
        if special_tokens_mask is None:
            special_tokens_mask = torch.tensor(
                [
                    self.tokenizer.get_special_tokens_mask(row, already_has_special_tokens=True)
                    for row in labels.tolist()
                ],
                dtype=torch.bool,
            )
        special_tokens_mask = special_tokens_mask.bool()
        tokens = self.tokenizer.convert_ids_to_tokens(inputs.flatten().tolist())
        continuation = torch.tensor(
            [token.startswith("##") for token in tokens], dtype=torch.bool
        ).view(inputs.shape)
        continuation &= ~special_tokens_mask
        # word index of every token: a new word starts at each token that is not a continuation
        word_ids = torch.cumsum((~continuation).long(), dim=-1)  # (B, T)
        word_probability = torch.full(inputs.shape, self.mlm_probability)
        word_probability.masked_fill_(special_tokens_mask | continuation, 0.0)
        word_chosen = torch.bernoulli(word_probability, generator=self.generator).bool()
        chosen_word_ids = torch.where(word_chosen, word_ids, 0)
        masked = torch.zeros_like(word_chosen)
        for row in range(inputs.shape[0]):
            chosen = chosen_word_ids[row][chosen_word_ids[row] > 0]
            masked[row] = torch.isin(word_ids[row], chosen)
        masked &= ~special_tokens_mask
        labels[~masked] = -100
        replace = torch.bernoulli(
            torch.full(inputs.shape, self.mask_replace_prob), generator=self.generator
        ).bool()
        replace &= masked
        inputs[replace] = self.tokenizer.mask_token_id
        random_share = self.random_replace_prob / max(1.0 - self.mask_replace_prob, 1e-12)
        randomise = torch.bernoulli(
            torch.full(inputs.shape, random_share), generator=self.generator
        ).bool()
        randomise &= masked & ~replace
        inputs[randomise] = torch.randint(
            len(self.tokenizer), inputs.shape, generator=self.generator
        )[randomise]
        return inputs, labels


class ExampleSeededMasking:
    """Makes an MLM collator (one that masks in `torch_mask_tokens` with `self.generator`, as
    `DataCollatorForLanguageModeling` and `WholeWordMaskCollator` do) mask each example as a
    function of the collator's `seed`, its `epoch` and the example's tokens alone: the same
    masked positions and replacements whatever else is in the batch, however long the batch is
    padded, and whichever process collates the example. So 2 processes x batch 4 see the masks of
    1 process x batch 8, and a resumed run those of an uninterrupted one. `epoch` changes the
    masks from epoch to epoch (dynamic masking); `MaskingEpochCallback` sets it from the Trainer.
    With dataloader workers, the collator is copied into them when an epoch's iteration starts
    (not with `dataloader_persistent_workers`, which would keep the first epoch's masks). Without
    a seed, the collator masks as its base class does."""

    epoch: int = 0

    def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        if self.seed is None or offset_mapping is not None:
            return super().torch_mask_tokens(inputs, special_tokens_mask, offset_mapping)
        labels = torch.full_like(inputs, -100)
        pad_token_id = self.tokenizer.pad_token_id
        padding = (
            torch.zeros_like(inputs, dtype=torch.bool)
            if pad_token_id is None
            else inputs == pad_token_id
        )
        for row in range(inputs.shape[0]):
            kept = (~padding[row]).nonzero()
            if len(kept) == 0:
                continue
            span = slice(int(kept[0]), int(kept[-1]) + 1)  # the example without its padding
            tokens = inputs[row, span].clone()
            key = f"{self.seed}/{self.epoch}/".encode() + tokens.numpy().astype("<i8").tobytes()
            digest = hashlib.blake2b(key, digest_size=8).digest()
            self.generator = torch.Generator().manual_seed(int.from_bytes(digest, "little"))
            special = (
                None if special_tokens_mask is None else special_tokens_mask[row : row + 1, span]
            )
            masked, row_labels = super().torch_mask_tokens(tokens[None], special)
            inputs[row, span], labels[row, span] = masked[0], row_labels[0]
        return inputs, labels


class ExampleSeededMaskCollator(ExampleSeededMasking, DataCollatorForLanguageModeling):
    """transformers' MLM collator (15% of the tokens, 80/10/10) with `ExampleSeededMasking`."""


class ExampleSeededWholeWordMaskCollator(ExampleSeededMasking, WholeWordMaskCollator):
    """`WholeWordMaskCollator` with `ExampleSeededMasking`."""


class MaskingEpochCallback(TrainerCallback):
    """Tells an `ExampleSeededMasking` collator the Trainer's epoch at the start of each epoch."""

    def __init__(self, collator: ExampleSeededMasking):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is the number of epochs done: whole at an epoch's start (fractional only when
        # resuming from a checkpoint saved inside this epoch).
        self.collator.epoch = math.floor((state.epoch or 0) + 1e-6)
