"""GPT's task-specific input transformations (Radford et al. 2018, §3.3, Figure 1).

Fine-tuning keeps the pre-trained architecture; structured inputs become one token sequence, wrapped
in a randomly initialised start token <s>, an extract token <e> whose final state h_l^m feeds the
classifier, and a delimiter $ between the parts:

    classification   <s> text <e>
    entailment       <s> premise $ hypothesis <e>
    similarity       <s> A $ B <e>   and   <s> B $ A <e>     (both orderings; their h_l^m are added)
    multiple choice  <s> context $ answer_k <e>              (one sequence per answer k)

`GPTTaskInputs(tokenizer, model)` adds the three tokens to the tokenizer, grows the model's (tied)
embeddings to match, and formats examples as lists of token ids ready for a collator.
"""

from collections.abc import Sequence

START_TOKEN = "<|start|>"
DELIMITER_TOKEN = "<|delimiter|>"
EXTRACT_TOKEN = "<|extract|>"


class GPTTaskInputs:
    """Formats fine-tuning examples as the paper's token sequences.

    `max_length` bounds every formatted sequence: the longest text part is shortened first (from its
    end), so that the start, delimiter and extract tokens always survive.
    """

    def __init__(self, tokenizer, model=None, max_length: int | None = None):
        tokenizer.add_special_tokens(
            {"additional_special_tokens": [START_TOKEN, DELIMITER_TOKEN, EXTRACT_TOKEN]},
            replace_extra_special_tokens=False,
        )
        if model is not None and model.get_input_embeddings().num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.start_id, self.delimiter_id, self.extract_id = tokenizer.convert_tokens_to_ids(
            [START_TOKEN, DELIMITER_TOKEN, EXTRACT_TOKEN]
        )

    def _tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _join(self, *parts: str) -> list[int]:
        """<s> part_1 $ part_2 ... <e>, shortening the longest part until it fits."""
        pieces = [self._tokens(part) for part in parts]
        if self.max_length is not None:
            room = self.max_length - len(pieces) - 1  # start + delimiters + extract
            if room < len(pieces):
                raise ValueError(
                    f"max_length {self.max_length} leaves no room for {len(pieces)} parts"
                )
            while sum(len(piece) for piece in pieces) > room:
                longest = max(pieces, key=len)
                del longest[-1]
        ids = [self.start_id]
        for i, piece in enumerate(pieces):
            if i:
                ids.append(self.delimiter_id)
            ids.extend(piece)
        return [*ids, self.extract_id]

    def classification(self, text: str) -> list[int]:
        """<s> text <e>"""
        return self._join(text)

    def entailment(self, premise: str, hypothesis: str) -> list[int]:
        """<s> premise $ hypothesis <e>"""
        return self._join(premise, hypothesis)

    def similarity(self, first: str, second: str) -> list[list[int]]:
        """Both orderings, [<s> A $ B <e>, <s> B $ A <e>]: no inherent order between the two
        texts."""
        return [self._join(first, second), self._join(second, first)]

    def multiple_choice(self, context: str, answers: Sequence[str]) -> list[list[int]]:
        """One sequence <s> context $ answer_k <e> per answer."""
        return [self._join(context, answer) for answer in answers]
