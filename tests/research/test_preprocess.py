"""The named clean-ups of experiment configs."""

import pytest

from euds.research import preprocess

POST = """From: someone@example.edu (Some One)
Subject: Re: Best CPU for a 486 board?
Organization: Example University
Lines: 12

In article <1993Apr1.123@other.edu> other@other.edu (Other) writes:
> Which CPU should I buy?
>> a quoted quote
| another quoting style

The DX2/66 is the fastest you can put on that board.
It runs hot, so get a fan.

--
Some One  |  some@example.edu  |  "a signature quote"
"""


def test_newsgroups_keeps_the_body_only():
    body = preprocess.newsgroups(POST)
    assert body == (
        "The DX2/66 is the fastest you can put on that board.\nIt runs hot, so get a fan."
    )


def test_newsgroups_real_posts_lose_headers(data_dir):
    import gzip
    import json

    with gzip.open(data_dir / "20newsgroups" / "train.jsonl.gz", "rt") as f:
        posts = [json.loads(next(f))["text"] for _ in range(200)]
    cleaned = [preprocess.newsgroups(p) for p in posts]
    assert not any(c.startswith(("From:", "Subject:")) for c in cleaned)
    assert not any(line.startswith(">") for c in cleaned for line in c.split("\n"))
    assert sum(bool(c) for c in cleaned) > 180


def test_unknown_preprocess_names_the_choices():
    assert preprocess.get("") is None
    with pytest.raises(ValueError, match="newsgroups"):
        preprocess.get("html")
