"""Plumbing for datasets of any kind: mapping over rows or over every split (map-style or
streamed), their column names, and their sizes in words."""

from collections.abc import Callable

from datasets import IterableDataset


def map_rows(rows, function: Callable, description: str, num_proc: int | None = None, **kwargs):
    """`rows.map(function, batched=True, **kwargs)`: for a `Dataset` at once (`num_proc` workers,
    a progress bar saying `description`), for an `IterableDataset` lazily, as it is read."""
    if isinstance(rows, IterableDataset):
        return rows.map(function, batched=True, **kwargs)
    return rows.map(function, batched=True, num_proc=num_proc, desc=description, **kwargs)


def map_splits(
    datasets, splits: list[str], function: Callable, description: str, num_proc: int | None = None
) -> dict:
    """{split: `map_rows` of `datasets[split]`} for each of `splits`, the function's columns
    replacing the split's own."""
    return {
        split: map_rows(
            datasets[split],
            function,
            f"{split}: {description}",
            num_proc,
            remove_columns=column_names(datasets[split]),
        )
        for split in splits
    }


def column_names(rows) -> list[str]:
    """The columns of a dataset; a stream that does not declare its features is asked for its
    first row."""
    if rows.column_names is not None:
        return rows.column_names
    return list(next(iter(rows)).keys())


def describe_sizes(splits: dict) -> str:
    """ "N train, M validation" (a stream: "streamed train"), for a script's log."""
    return ", ".join(
        f"{'streamed' if isinstance(rows, IterableDataset) else len(rows)} {split}"
        for split, rows in splits.items()
    )
