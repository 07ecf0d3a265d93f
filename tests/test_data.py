"""Corpus loading and language-model blocks shared by the examples."""

import json

from datasets import Dataset, IterableDataset

from hf_scratch.data import CorpusArguments, group_texts, load_text_datasets, pydoc_corpus


def test_embedded_corpus_needs_no_download():
    corpus = pydoc_corpus()
    assert len(corpus) > 50 and sum(len(text) for text in corpus) > 300_000
    datasets = load_text_datasets(validation_split_percentage=10)
    assert len(datasets["train"]) + len(datasets["validation"]) == len(corpus)
    assert len(datasets["validation"]) >= len(corpus) // 10


def test_text_json_and_csv_files(tmp_path):
    lines = [f"line number {i}" for i in range(40)]
    (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in lines))
    (tmp_path / "corpus.csv").write_text("text\n" + "\n".join(lines) + "\n")
    for name in ("corpus.txt", "corpus.jsonl", "corpus.csv"):
        datasets = load_text_datasets(
            train_file=str(tmp_path / name), validation_split_percentage=25
        )
        rows = sorted([*datasets["train"]["text"], *datasets["validation"]["text"]])
        # a text file's rows keep their line breaks: joined, they give the text back
        assert rows == sorted(line + "\n" if name.endswith(".txt") else line for line in lines)
        assert len(datasets["validation"]) == 10


def test_streaming_holds_out_the_first_rows_and_streams_the_rest(tmp_path):
    lines = [f"line number {i}\n" for i in range(40)]
    (tmp_path / "corpus.txt").write_text("".join(lines))
    datasets = load_text_datasets(
        train_file=str(tmp_path / "corpus.txt"), streaming=True, validation_rows=6
    )
    assert isinstance(datasets["train"], IterableDataset)
    assert isinstance(datasets["validation"], Dataset)
    assert datasets["validation"]["text"] == lines[:6]
    assert [row["text"] for row in datasets["train"]] == lines[6:]
    arguments = CorpusArguments(max_train_samples=5, max_eval_samples=2)
    limited = arguments.limit(datasets)
    assert [row["text"] for row in limited["train"]] == lines[6:11]
    assert limited["validation"]["text"] == lines[:2]


def test_group_texts_cuts_full_blocks_with_labels():
    blocks = group_texts({"input_ids": [[1, 2, 3], [4, 5], [6, 7, 8, 9]]}, block_size=4)
    assert blocks["input_ids"] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert blocks["labels"] == blocks["input_ids"]
    assert blocks["labels"][0] is not blocks["input_ids"][0]
