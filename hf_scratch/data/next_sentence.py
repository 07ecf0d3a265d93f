"""BERT's next-sentence pairs (Devlin et al. 2019, §3.1, Task #2): documents split into
segments, and pairs in which B follows A (IsNext) or comes from another document (NotNext), 50%
each."""

import random
import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_segments(document: str) -> list[str]:
    """A document's segments for next-sentence pairs: its non-empty lines, and a line holding
    several sentences split after . ! or ?"""
    return [
        sentence
        for line in document.splitlines()
        for sentence in _SENTENCE_END.split(line.strip())
        if sentence
    ]


class _Column:
    """One column of a `Dataset`, read a row at a time (`dataset[column]` would read it whole)."""

    def __init__(self, dataset, column: str):
        self.dataset, self.column = dataset, column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index][self.column]


class NextSentencePairs:
    """Builds BERT's pre-training pairs [CLS] A [SEP] B [SEP] (Devlin et al. 2019, §3.1, Appendix
    A.2) from documents whose segments are already tokenized, for
    `documents.map(pairs, batched=True, with_indices=True, remove_columns=documents.column_names)`.

    Each document is cut into chunks of segments filling `max_seq_length - 3` tokens (with
    probability `short_seq_prob` a shorter random target, as the original recipe does, so the model
    also sees short inputs); each chunk gives one pair. With probability 1/2, B is the text that
    follows A (next_sentence_label 0, IsNext, Hugging Face's convention); otherwise B is taken from
    a random other document (label 1, NotNext) and the unused rest of the chunk is kept for the next
    pair. A document is never its own "random" document. Token type ids are 0 on [CLS] A [SEP], 1 on
    B [SEP].

    The random choices of a document depend only on `seed` and the document's index, so the result
    is the same whatever the batch size or `num_proc` of the `map`.

    With `documents=None` (a stream, whose documents cannot be looked up by index), the random B
    comes from another document of the same `map` batch (1,000 documents by default); the result
    then depends on the batch size too.
    """

    def __init__(
        self,
        documents,
        cls_token_id: int,
        sep_token_id: int,
        max_seq_length: int = 128,
        short_seq_prob: float = 0.1,
        seed: int = 0,
        column: str = "segments",
    ):
        if max_seq_length < 5:
            raise ValueError(f"max_seq_length must leave room for 2 tokens, got {max_seq_length}")
        self.documents = documents
        self.cls_token_id, self.sep_token_id = cls_token_id, sep_token_id
        self.max_tokens = max_seq_length - 3  # [CLS], [SEP], [SEP]
        self.short_seq_prob = short_seq_prob
        self.seed = seed
        self.column = column

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        pairs = {"input_ids": [], "token_type_ids": [], "next_sentence_label": []}
        if self.documents is None:  # random B from this batch: positions in it, not indices
            pool = batch[self.column]
        else:
            pool = _Column(self.documents, self.column)
        for position, (segments, index) in enumerate(zip(batch[self.column], indices, strict=True)):
            own = position if self.documents is None else index
            for tokens_a, tokens_b, label in self._document_pairs(segments, index, own, pool):
                pairs["input_ids"].append(
                    [self.cls_token_id, *tokens_a, self.sep_token_id, *tokens_b, self.sep_token_id]
                )
                pairs["token_type_ids"].append(
                    [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                )
                pairs["next_sentence_label"].append(label)
        return pairs

    def _document_pairs(self, segments: list[list[int]], index: int, own: int, pool):
        """(tokens A, tokens B, label) for each chunk of one document; `own` is its position in
        `pool`, the documents a random B is drawn from."""
        rng = random.Random(f"{self.seed}/{index}")
        segments = [segment for segment in segments if segment]
        target = self._target_length(rng)
        start = end = 0  # the chunk is segments[start : end + 1]
        while end < len(segments):
            if end < len(segments) - 1 and sum(map(len, segments[start : end + 1])) < target:
                end += 1
                continue
            chunk = segments[start : end + 1]
            random_next = rng.random() < 0.5 and len(pool) > 1
            if len(chunk) > 1:
                a_end = rng.randint(1, len(chunk) - 1)
                tokens_a = [token for segment in chunk[:a_end] for token in segment]
                actual_next = [token for segment in chunk[a_end:] for token in segment]
                # a random B leaves the chunk's unused segments for the next pair
                next_start = start + a_end if random_next else end + 1
            else:  # a single segment: its two halves are A and the actual next text
                half = len(chunk[0]) // 2
                tokens_a, actual_next = (
                    list(chunk[0][: half or None]),
                    list(chunk[0][half:] if half else []),
                )
                next_start = end + 1
            tokens_b = (
                self._random_segments(rng, pool, own, target - len(tokens_a))
                if random_next
                else actual_next
            )
            if tokens_a and tokens_b:
                self._truncate_pair(tokens_a, tokens_b, rng)
                yield tokens_a, tokens_b, int(random_next)
            start = end = next_start
            target = self._target_length(rng)

    def _target_length(self, rng: random.Random) -> int:
        if rng.random() < self.short_seq_prob:
            return rng.randint(2, self.max_tokens)
        return self.max_tokens

    def _random_segments(self, rng: random.Random, pool, own: int, target: int) -> list[int]:
        """Tokens from a random document of `pool` other than the one at `own`, from a random
        segment on, about `target` long."""
        other = rng.randrange(len(pool) - 1)
        other += other >= own  # never the document itself
        segments = [segment for segment in pool[other] if segment]
        tokens = []
        for segment in segments[rng.randrange(len(segments)) :] if segments else []:
            tokens.extend(segment)
            if len(tokens) >= target:
                break
        return tokens

    def _truncate_pair(self, tokens_a: list[int], tokens_b: list[int], rng: random.Random) -> None:
        """Shorten the longer of A and B, from a random end, until both fit (in place)."""
        while len(tokens_a) + len(tokens_b) > self.max_tokens:
            longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
            del longer[0 if rng.random() < 0.5 else -1]
