"""A reproducible corruption generator: turns a clean pool into a noisy one, to measure whether
a selection drops junk (what corpus filtering is for).

``make_junk(texts, n, seed=...)`` returns ``n`` junk texts, each with its kind, drawn in equal
shares (largest remainder) from :data:`KINDS`; the same texts, ``n`` and seed give the same
junk. ``noisy_pool`` mixes them into the pool at seeded positions with random labels. The kinds
are what web and forum corpora are full of:

``exact_duplicate``
    a copy of a pool text, byte for byte.
``near_duplicate``
    a pool text with one or two small edits: a word dropped or doubled, its case changed,
    punctuation added (always a different ``text_hash``).
``gibberish``
    random tokens: words drawn uniformly from the pool's vocabulary, or random letter strings.
``mojibake``
    a pool text, given accents, decoded with the wrong code page (UTF-8 bytes read as cp1252),
    or strewn with replacement characters, control characters and symbol garbage.
``boilerplate``
    cookie banners, "click here to subscribe", navigation and footer lines, from templates.
``truncated``
    a fragment of a pool text: its first one to three words, or cut mid-word.
``other_language``
    sentences in German, French, Spanish, Polish, Russian, Chinese, Turkish or Indonesian,
    composed from a small built-in phrase list.
``repetitive``
    one word, a short phrase or a pool sentence repeated many times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS: tuple[str, ...] = (
    "exact_duplicate",
    "near_duplicate",
    "gibberish",
    "mojibake",
    "boilerplate",
    "truncated",
    "other_language",
    "repetitive",
)

_BOILERPLATE = (
    "We use cookies to improve your experience. By continuing to browse you agree to our {p}.",
    "This site uses cookies. {a} | Manage preferences | Reject all",
    "Click here to subscribe to our newsletter and get {n}% off your first order!",
    "Home | About us | Contact | {p} | Terms of use | Sitemap",
    "Copyright (c) {y} All rights reserved. {p}",
    "Sign up for free today! Click here to subscribe. Unsubscribe at any time.",
    "Share this: Facebook Twitter Email Print | {a}",
    "Skip to main content | Menu | Search | Log in | Register",
    "Loading... Please enable JavaScript to view the comments powered by Disqus.",
    "Read more >> | Previous page | Next page | Back to top",
    "{a} to continue reading. Already a subscriber? Log in here.",
    "Posted by admin at {h}:{m} | {n} comments | Labels: news, updates",
)
_BOILER_FILL = {
    "p": ("Privacy Policy", "Cookie Policy", "privacy statement", "Terms and Conditions"),
    "a": ("Accept all", "Subscribe now", "Sign in", "Click here", "Register for free"),
}

_FOREIGN = {
    "de": (
        "Der Zug nach Berlin hat heute leider eine Stunde Verspätung.",
        "Wir haben am Wochenende im Garten gearbeitet und Kuchen gegessen.",
        "Die Regierung hat neue Regeln für den Straßenverkehr beschlossen.",
        "Kannst du mir bitte sagen, wo der nächste Bahnhof ist?",
        "Das Wetter in den Bergen war kalt, aber sehr schön.",
    ),
    "fr": (
        "Nous sommes allés au marché pour acheter des légumes frais.",
        "Le musée est fermé le lundi pendant tout le mois d'août.",
        "Il faut réserver une table avant de venir au restaurant.",
        "Les enfants jouent dans le parc après l'école.",
        "La réunion a été reportée à la semaine prochaine.",
    ),
    "es": (
        "El autobús sale de la estación central a las ocho de la mañana.",
        "Mi hermana estudia medicina en la universidad de Salamanca.",
        "Hace mucho calor en verano y casi nunca llueve.",
        "¿Dónde puedo comprar un billete para el concierto?",
        "La biblioteca nueva tiene más de diez mil libros.",
    ),
    "pl": (
        "Wczoraj wieczorem oglądaliśmy film w starym kinie na rynku.",
        "Proszę zamknąć okno, bo w pokoju jest bardzo zimno.",
        "Sklep spożywczy jest otwarty od poniedziałku do soboty.",
        "Moja babcia piecze najlepsze pierogi w całej rodzinie.",
        "Pociąg do Krakowa odjeżdża z peronu trzeciego.",
    ),
    "ru": (
        "Сегодня утром мы гуляли в парке возле реки.",
        "Пожалуйста, позвоните мне завтра после обеда.",
        "В этом году урожай яблок был очень хорошим.",
        "Библиотека работает до восьми часов вечера.",
        "Мой брат купил новую машину в прошлом месяце.",
    ),
    "zh": (
        "今天天气很好，我们去公园散步吧。",
        "这家餐厅的饺子非常好吃，价格也不贵。",
        "请问去火车站应该怎么走？",
        "他每天早上七点起床，然后去学校上课。",
        "图书馆周末也开门，可以借书和看报纸。",
    ),
    "tr": (
        "Yarın sabah erkenden İstanbul'a gitmemiz gerekiyor.",
        "Bu kitabı geçen yaz tatilde okudum ve çok beğendim.",
        "Pazardan taze domates ve biber aldık.",
        "Toplantı saat üçte başlayacak, lütfen geç kalmayın.",
        "Kedimiz bütün gün pencerenin önünde uyudu.",
    ),
    "id": (
        "Kami pergi ke pantai pada hari Minggu bersama keluarga.",
        "Harga beras di pasar naik sejak bulan lalu.",
        "Tolong bawa payung karena sore ini akan hujan.",
        "Anak-anak belajar membaca di perpustakaan sekolah.",
        "Kantor pos buka dari jam delapan sampai jam empat.",
    ),
}

_GARBAGE = "\ufffd\x07\x1b\u00a4\u00a7\u00b6\u2020\u2021\u00ac\u00a6#@$%^&*~|\\<>{}[]"
_ACCENTED = {"a": "á", "e": "é", "i": "í", "o": "ö", "u": "ü", "'": "’", "c": "ç", "n": "ñ"}
_REPEATED = ("buy now", "lol", "click", "ok", "the best", "free", "hahaha", "yes")


@dataclass(frozen=True)
class Junk:
    text: str
    kind: str


def make_junk(texts: Sequence[str], n: int, *, seed: int) -> list[Junk]:
    """``n`` junk texts made from the pool ``texts``, the kinds in equal shares, in a seeded
    order."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    pool = [t for t in texts if isinstance(t, str) and t.strip()]
    if n and not pool:
        raise ValueError("make_junk needs at least one non-empty text to corrupt")
    rng = np.random.default_rng(seed)
    vocabulary = sorted({w for t in pool[:5000] for w in t.split()})
    shares = np.full(len(KINDS), n // len(KINDS))
    shares[: n - int(shares.sum())] += 1
    junk = [
        Junk(_MAKERS[kind](pool, vocabulary, rng), kind)
        for kind, count in zip(KINDS, shares, strict=True)
        for _ in range(int(count))
    ]
    return [junk[i] for i in rng.permutation(len(junk))]


def noisy_pool(
    records: Sequence[dict[str, Any]],
    share: float,
    *,
    seed: int,
    text_field: str = "text",
    label_field: str = "label",
) -> list[dict[str, Any]]:
    """The records with junk added so that it makes ``share`` of the result: each junk record
    has a random label from the pool's labels, ``junk`` (its kind) and an id ``junk-SEED-I``;
    it is placed at a seeded random position, the clean records keep their order."""
    if not 0 <= share < 1:
        raise ValueError(f"share must lie in [0, 1), got {share!r}")
    n_junk = round(len(records) * share / (1 - share))
    rng = np.random.default_rng([seed, 1])
    labels = sorted({r[label_field] for r in records}, key=str)
    junk = make_junk([r[text_field] for r in records], n_junk, seed=seed)
    made = [
        {
            "id": f"junk-{seed}-{i}",
            text_field: j.text,
            label_field: labels[int(rng.integers(len(labels)))],
            "junk": j.kind,
        }
        for i, j in enumerate(junk)
    ]
    at = set(rng.choice(len(records) + n_junk, size=n_junk, replace=False).tolist())
    clean, dirty = iter(records), iter(made)
    return [next(dirty) if i in at else next(clean) for i in range(len(records) + n_junk)]


def _pick(pool: Sequence[str], rng: np.random.Generator) -> str:
    return pool[int(rng.integers(len(pool)))]


def _exact(pool, vocabulary, rng) -> str:
    return _pick(pool, rng)


def _near(pool, vocabulary, rng) -> str:
    original = _pick(pool, rng)
    words = original.split()
    for _ in range(int(rng.integers(1, 3))):
        edit = int(rng.integers(4))
        i = int(rng.integers(len(words)))
        if edit == 0 and len(words) > 1:
            del words[i]
        elif edit == 1:
            words.insert(i, words[i])
        elif edit == 2:
            words[i] = words[i].upper() if words[i].islower() else words[i].lower()
        else:
            words[i] = words[i] + ("!" if rng.random() < 0.5 else " ,")
    text = " ".join(words)
    # Spacing alone is folded by text_hash: a near duplicate must differ in more than that.
    return text + " !" if text.split() == original.split() else text


def _gibberish(pool, vocabulary, rng) -> str:
    n = int(rng.integers(5, 40))
    if rng.random() < 0.5 and vocabulary:
        return " ".join(vocabulary[int(i)] for i in rng.integers(len(vocabulary), size=n))
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join(
        "".join(letters[int(c)] for c in rng.integers(26, size=int(rng.integers(1, 12))))
        for _ in range(n)
    )


def _mojibake(pool, vocabulary, rng) -> str:
    text = _pick(pool, rng)
    if rng.random() < 0.5:
        # UTF-8 read as cp1252, as a wrong code page shows it: "cafÃ©", "donâ€™t". A text in
        # plain ASCII is first given the accents and quotes that break.
        chars = [_ACCENTED.get(c, c) if rng.random() < 0.4 else c for c in text]
        return "".join(chars).encode("utf-8").decode("cp1252", errors="replace")
    chars = list(text)
    for _ in range(max(3, len(chars) // 3)):
        chars.insert(int(rng.integers(len(chars) + 1)), _GARBAGE[int(rng.integers(len(_GARBAGE)))])
    return "".join(chars)


def _boilerplate(pool, vocabulary, rng) -> str:
    lines = []
    for _ in range(int(rng.integers(1, 4))):
        template = _BOILERPLATE[int(rng.integers(len(_BOILERPLATE)))]
        lines.append(
            template.format(
                p=_BOILER_FILL["p"][int(rng.integers(len(_BOILER_FILL["p"])))],
                a=_BOILER_FILL["a"][int(rng.integers(len(_BOILER_FILL["a"])))],
                n=int(rng.integers(5, 60)),
                y=int(rng.integers(1998, 2026)),
                h=int(rng.integers(1, 13)),
                m=f"{int(rng.integers(60)):02d}",
            )
        )
    return "\n".join(lines)


def _truncated(pool, vocabulary, rng) -> str:
    text = _pick(pool, rng)
    if rng.random() < 0.5:
        return " ".join(text.split()[: int(rng.integers(1, 4))])
    return text[: max(1, int(rng.integers(1, max(2, len(text) // 4))))]


def _other_language(pool, vocabulary, rng) -> str:
    languages = sorted(_FOREIGN)
    sentences = _FOREIGN[languages[int(rng.integers(len(languages)))]]
    order = rng.permutation(len(sentences))[: int(rng.integers(1, 4))]
    return " ".join(sentences[int(i)] for i in order)


def _repetitive(pool, vocabulary, rng) -> str:
    choice = int(rng.integers(3))
    if choice == 0:
        unit = _REPEATED[int(rng.integers(len(_REPEATED)))]
    elif choice == 1:
        unit = vocabulary[int(rng.integers(len(vocabulary)))] if vocabulary else "a"
    else:
        unit = _pick(pool, rng)
    return " ".join([unit] * int(rng.integers(6, 30)))


_MAKERS = {
    "exact_duplicate": _exact,
    "near_duplicate": _near,
    "gibberish": _gibberish,
    "mojibake": _mojibake,
    "boilerplate": _boilerplate,
    "truncated": _truncated,
    "other_language": _other_language,
    "repetitive": _repetitive,
}
