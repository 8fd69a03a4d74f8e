"""The searchable words and the preview of a stored response (store/ops/texts.py): what
they are is defined by two regular expressions (runs of letters and digits, lower-cased;
runs of white space as one space), which the code answers without for ASCII text."""

from __future__ import annotations

import random
import re

from continuo.store.ops.texts import PREVIEW_CHARS, preview, words

WORD = re.compile(r"[^\W_]+")
SPACE = re.compile(r"\s+")


def expected_words(text: str) -> str:
    return " ".join(WORD.findall(text.lower()))


def expected_preview(text: str) -> str:
    return SPACE.sub(" ", text[: PREVIEW_CHARS * 4].replace("\x00", "")).strip()[:PREVIEW_CHARS]


def test_words_and_preview_by_example() -> None:
    text = "  Hello,\tWORLD_42!\n\n(snake_case) é\u00a0\u03a3\u0391\u03a3  a-b\x00c \u3000end "
    assert words(text) == "hello world 42 snake case é \u03c3\u03b1\u03c2 a b c end"
    assert preview(text) == "Hello, WORLD_42! (snake_case) é \u03a3\u0391\u03a3 a-bc end"
    assert words("no_text-here") == "no text here"
    assert words("") == "" and preview("") == ""
    assert preview("a\r\n\x0b\x0c\x1c\x85b") == "a b"  # every kind of white space the regex knows


def test_words_and_preview_agree_with_the_regular_expressions() -> None:
    rng = random.Random(20261201)  # fixed: the same texts at every run
    ascii_chars = [chr(c) for c in range(128)]
    other = list("éÉßİıﬁ١٢Ⅻ\u00a0\u2028\u3000\x85\u03a3\u03c3\u03c2\u01c5\u212a_")
    other += [chr(rng.randint(128, 0x2FFFF)) for _ in range(100)]
    for _ in range(5000):
        pool = ascii_chars + other if rng.random() < 0.3 else ascii_chars
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 80)))
        assert words(text) == expected_words(text), repr(text)
        assert preview(text) == expected_preview(text), repr(text)
