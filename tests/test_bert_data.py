"""BERT pre-training data: the 15% / 80-10-10 masking, whole-word masking, next-sentence pairs."""

import pytest
import torch
from conftest import wordpiece_tokenizer_of
from datasets import Dataset

from hf_scratch.data import (
    ExampleSeededMaskCollator,
    NextSentencePairs,
    WholeWordMaskCollator,
    split_segments,
)

CLS, SEP, MASK = 2, 3, 4


@pytest.fixture(scope="module")
def wordpiece_tokenizer():
    return wordpiece_tokenizer_of(words=400, pieces=100)


def _large_batch(continuation_share=0.0):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 405, (2000, 128), generator=generator)
    if continuation_share:
        pieces = torch.rand(ids.shape, generator=generator) < continuation_share
        ids[pieces] = torch.randint(405, 505, (int(pieces.sum()),), generator=generator)
    ids[:, 0], ids[:, 60], ids[:, -1] = CLS, SEP, SEP
    return ids


def _proportions(original, batch):
    selected = batch["labels"] != -100
    masked = (batch["input_ids"] == MASK) & selected
    unchanged = (batch["input_ids"] == original) & selected
    share = selected.sum().item()
    return selected, masked.sum().item() / share, unchanged.sum().item() / share


def test_masking_is_15_percent_then_80_10_10(wordpiece_tokenizer):
    """The paper's recipe from the pre-training script's collator (masks drawn per example), within
    half a percentage point."""
    collator = ExampleSeededMaskCollator(
        wordpiece_tokenizer,
        mlm_probability=0.15,
        mask_replace_prob=0.8,
        random_replace_prob=0.1,
        seed=0,
    )
    original = _large_batch()
    batch = collator([{"input_ids": row} for row in original])
    selected, masked, unchanged = _proportions(original, batch)
    special = (original == CLS) | (original == SEP)
    assert not (selected & special).any()
    assert abs(selected.sum().item() / (~special).sum().item() - 0.15) < 0.005
    assert abs(masked - 0.80) < 0.005
    assert abs(unchanged - 0.10) < 0.005  # a random replacement equals the original 1 time in 505
    assert abs(1 - masked - unchanged - 0.10) < 0.005
    torch.testing.assert_close(batch["labels"][selected], original[selected])


def test_whole_word_masking_masks_whole_words_80_10_10(wordpiece_tokenizer):
    collator = WholeWordMaskCollator(wordpiece_tokenizer, mlm_probability=0.15, seed=0)
    original = _large_batch(continuation_share=0.4)
    batch = collator([{"input_ids": row} for row in original])
    selected, masked, unchanged = _proportions(original, batch)
    continuation = original >= 405
    word_start = ~continuation
    # a continuation piece is selected exactly when the token before it is
    follows = continuation[:, 1:]
    assert torch.equal(selected[:, 1:][follows], selected[:, :-1][follows])
    assert not (selected & ((original == CLS) | (original == SEP))).any()
    words_selected = (selected & word_start).sum().item() / (
        word_start & (original > 4)
    ).sum().item()
    assert abs(words_selected - 0.15) < 0.005
    assert abs(masked - 0.80) < 0.01 and abs(unchanged - 0.10) < 0.01


def _documents():
    """Document d uses tokens 1000 d + 10 .. 1000 d + 999, so every token tells its document."""
    generator = torch.Generator().manual_seed(0)
    documents = []
    for d in range(1, 101):
        segments = []
        position = 10
        for _ in range(int(torch.randint(1, 12, (1,), generator=generator))):
            length = int(torch.randint(3, 25, (1,), generator=generator))
            segments.append(list(range(1000 * d + position, 1000 * d + position + length)))
            position += length
        documents.append(segments)
    return Dataset.from_dict({"segments": documents})


def test_next_sentence_pairs_follow_the_recipe():
    documents = _documents()
    pairs = NextSentencePairs(documents, CLS, SEP, max_seq_length=48, short_seq_prob=0.1, seed=3)
    built = documents.map(pairs, batched=True, with_indices=True, remove_columns=["segments"])
    labels = built["next_sentence_label"]
    assert len(labels) > 200
    assert 0.4 < sum(labels) / len(labels) < 0.6
    for input_ids, token_types, label in zip(
        built["input_ids"], built["token_type_ids"], labels, strict=True
    ):
        assert len(input_ids) <= 48 and len(token_types) == len(input_ids)
        first_sep = input_ids.index(SEP)
        assert (
            input_ids[0] == CLS
            and input_ids[-1] == SEP
            and SEP not in input_ids[first_sep + 1 : -1]
        )
        assert token_types == [0] * (first_sep + 1) + [1] * (len(input_ids) - first_sep - 1)
        tokens_a, tokens_b = input_ids[1:first_sep], input_ids[first_sep + 1 : -1]
        documents_a, documents_b = {t // 1000 for t in tokens_a}, {t // 1000 for t in tokens_b}
        assert len(documents_a) == 1 and len(documents_b) == 1
        if label == 0:  # IsNext: B continues A in the same document
            assert documents_a == documents_b and tokens_b[0] > tokens_a[-1]
        else:  # NotNext: B from another document, never the same one
            assert documents_a != documents_b
    assert min(map(len, built["input_ids"])) < 30  # the short-sequence option is used


def test_streamed_next_sentence_pairs_take_notnext_from_the_same_batch():
    documents = _documents()
    pairs = NextSentencePairs(None, CLS, SEP, max_seq_length=48, seed=3)  # a stream's mode
    built = list(
        documents.to_iterable_dataset().map(
            pairs, batched=True, batch_size=5, with_indices=True, remove_columns=["segments"]
        )
    )
    assert 0.4 < sum(pair["next_sentence_label"] for pair in built) / len(built) < 0.6
    for pair in built:
        input_ids = pair["input_ids"]
        first_sep = input_ids.index(SEP)
        document_a = {t // 1000 for t in input_ids[1:first_sep]}.pop()
        document_b = {t // 1000 for t in input_ids[first_sep + 1 : -1]}.pop()
        if pair["next_sentence_label"] == 0:
            assert document_a == document_b
        else:  # another document of the same batch of 5
            assert document_a != document_b and (document_a - 1) // 5 == (document_b - 1) // 5


def test_next_sentence_pairs_are_deterministic_across_batches_and_processes():
    documents = _documents()
    pairs = NextSentencePairs(documents, CLS, SEP, max_seq_length=32, seed=1)
    one = documents.map(pairs, batched=True, with_indices=True, remove_columns=["segments"])
    two = documents.map(
        pairs,
        batched=True,
        with_indices=True,
        remove_columns=["segments"],
        batch_size=4,
        num_proc=2,
    )
    assert one["input_ids"] == two["input_ids"]
    other_seed = documents.map(
        NextSentencePairs(documents, CLS, SEP, max_seq_length=32, seed=2),
        batched=True,
        with_indices=True,
        remove_columns=["segments"],
    )
    assert other_seed["input_ids"] != one["input_ids"]


def test_split_segments_by_lines_and_sentences():
    assert split_segments("First one. Second one!\n\nThird") == [
        "First one.",
        "Second one!",
        "Third",
    ]
