"""The damaged-text rule, in one place: which texts hold the traces of a broken encoding
(:func:`damage_of`, one text; :func:`damaged_texts`, a pool's usable records).

A text is damaged when it holds, checked in this order (the first names its kind):

* ``replacement_character``: U+FFFD, which a decoder writes for bytes it could not read;
* ``control_character``: a character of Unicode category Cc other than tab, line feed, vertical
  tab, form feed and carriage return, such as NUL, escape or delete (terminal and binary
  debris), or a C1 control, U+0080-U+009F (next line, U+0085, among them: in text it is most
  often cp1252's ellipsis read as latin-1);
* ``mojibake``: UTF-8 read in a wrong code page ("cafÃ©", "donâ€™t"), as ftfy's badness
  heuristic finds it (``ftfy.badness.is_bad``: character pairs that are unlikely in real text
  and likely in mojibake; tuned by its authors to leave real text in any language alone).

Mojibake is made of non-ASCII characters, and every sequence ftfy looks for holds one, so a text
in pure ASCII needs only the control-character search: one regular expression, in C.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from ftfy.badness import is_bad

REPLACEMENT = "replacement_character"
CONTROL = "control_character"
MOJIBAKE = "mojibake"
KINDS: tuple[str, ...] = (REPLACEMENT, CONTROL, MOJIBAKE)
#: Category Cc (U+0000-U+001F, U+007F-U+009F) without tab, LF, VT, FF and CR (U+0009-U+000D).
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def damage_of(text: str | None) -> str | None:
    """The kind of damage ``text`` holds (:data:`KINDS`, the first that applies), or None for an
    undamaged text; None for a missing text (the record is unscored, not damaged)."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"texts must be str or None, got {type(text).__name__}")
    if text.isascii():
        return CONTROL if _CONTROL.search(text) else None
    if "\ufffd" in text:
        return REPLACEMENT
    if _CONTROL.search(text):
        return CONTROL
    return MOJIBAKE if is_bad(text) else None


def damaged_texts(
    texts: Sequence[str | None], usable: np.ndarray
) -> tuple[np.ndarray, dict[str, int]]:
    """The rows of the usable records whose text is damaged (ascending), and how many of each
    kind (:data:`KINDS`, zeros included)."""
    if len(texts) != len(usable):
        raise ValueError(f"texts has {len(texts)} entries for {len(usable)} records")
    counts = dict.fromkeys(KINDS, 0)
    rows = []
    for i in np.flatnonzero(usable):
        kind = damage_of(texts[i])
        if kind is not None:
            counts[kind] += 1
            rows.append(i)
    return np.asarray(rows, dtype=np.int64), counts
