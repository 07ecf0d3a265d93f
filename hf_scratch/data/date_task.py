"""A synthetic translation task that needs no download: dates written out in words or with dots
("Friday, March 5, 2021", "05.03.2021") to ISO dates. A demo of the mechanism (reordering, mapping
month names), not a benchmark."""

import random

_MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def date_translation_pairs(count: int, seed: int = 0) -> dict[str, list[str]]:
    """A small translation task that needs no download: dates written as people write them
    ("Friday, March 5, 2021", "5 Mar 2021", "05.03.2021", ...) -> ISO 8601 ("2021-03-05").

    Solving it needs what translation needs, in miniature: reading the whole source, reordering
    (day, month and year come in several orders), and mapping words to other tokens (month names to
    numbers). A demo of the mechanism (the cross-attention weights show the alignment), not a
    benchmark. Returns {"source": [...], "target": [...]}.
    """
    import datetime

    rng = random.Random(seed)
    start = datetime.date(1900, 1, 1).toordinal()
    end = datetime.date(2099, 12, 31).toordinal()
    formats = [
        lambda d: f"{_WEEKDAYS[d.weekday()]}, {_MONTHS[d.month - 1]} {d.day}, {d.year}",
        lambda d: f"{d.day} {_MONTHS[d.month - 1]} {d.year}",
        lambda d: f"{_MONTHS[d.month - 1]} {d.day}, {d.year}",
        lambda d: f"{d.day} {_MONTHS[d.month - 1][:3]} {d.year}",
        lambda d: f"{_MONTHS[d.month - 1][:3]} {d.day} {d.year}",
        lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
        lambda d: f"the {d.day}th of {_MONTHS[d.month - 1]}, {d.year}",
        lambda d: f"{_WEEKDAYS[d.weekday()][:3]} {d.day} {_MONTHS[d.month - 1][:3]} {d.year}",
    ]
    sources, targets = [], []
    for _ in range(count):
        date = datetime.date.fromordinal(rng.randint(start, end))
        sources.append(rng.choice(formats)(date))
        targets.append(date.isoformat())
    return {"source": sources, "target": targets}
