"""Named text clean-ups an experiment applies before scoring and training (``preprocess = NAME``
in an experiment config).

``newsgroups``: what scikit-learn's ``fetch_20newsgroups(remove=("headers", "footers",
"quotes"))`` removes from a Usenet post, so that a topic model learns from the body and not from
the ``Newsgroups:``/``Subject:`` lines or a poster's signature:

* headers: everything before the first blank line;
* footers: a signature, i.e. everything from the last line made only of dashes on;
* quotes: lines quoting another post (starting with ``>`` or ``|``) and the attribution lines
  that introduce them (``In article <...>``, ``... writes:``, ``... wrote:``, ``... says:``,
  ``... said:``, ``Quoted from``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_QUOTE_LINE = re.compile(r"(writes in|writes:|wrote:|says:|said:|^In article|^Quoted from|^\||^>)")


def newsgroups(text: str) -> str:
    """The body of a Usenet post: no headers, no signature, no quoted replies."""
    _, blank, body = text.partition("\n\n")
    if not blank:  # no header block
        body = text
    lines = body.strip().split("\n")
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip().strip("-") == "" and lines[i].strip():
            lines = lines[:i]
            break
    kept = [line for line in lines if not _QUOTE_LINE.search(line)]
    return "\n".join(kept).strip()


PREPROCESSORS: dict[str, Callable[[str], str]] = {"newsgroups": newsgroups}


def get(name: str | None) -> Callable[[str], str] | None:
    """The clean-up called ``name`` (None or "" for none); a ``ValueError`` names the choices."""
    if not name:
        return None
    try:
        return PREPROCESSORS[name]
    except KeyError:
        raise ValueError(
            f"unknown preprocess {name!r}; choose from {sorted(PREPROCESSORS)}"
        ) from None
