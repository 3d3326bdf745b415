"""English / Chinese / mixed language detection from Unicode script shares.

The catalogue and reviews are English or Chinese, so counting Han ideographs against Latin letters
is enough to pick a tokenizer or an encoder, with no model to load and microseconds per text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# CJK Unified Ideographs, Extension A and the compatibility block: the characters jieba segments.
CJK_CLASS = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK = re.compile(f"[{CJK_CLASS}]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]")
_LETTER = re.compile(r"[^\W\d_]")

# An English word averages about 4.7 letters, a Chinese word about 1.6 characters.
HAN_WEIGHT = 3

EN, ZH, MIXED, OTHER, UNKNOWN = "en", "zh", "mixed", "other", "unknown"


def detect_language(text: str | None, dominance: float = 0.8) -> str:
    """Return "en" or "zh" when that script holds at least `dominance` of the text; "mixed" when Latin and
    Han together hold most of it but neither dominates; "other" for other scripts (Cyrillic, kana,
    Hangul, ...); "unknown" when there are no letters at all (empty, digits, punctuation).

    A Han character weighs HAN_WEIGHT letters, so shares approximate shares of words: a Chinese review
    quoting "iPhone" stays "zh", while "Apple iPhone 15 Pro 手机 256GB 黑色" is "mixed".
    """
    if not isinstance(text, str) or not text:
        return UNKNOWN
    letters = _LETTER.subn("", text)[1]
    if letters == 0:
        return UNKNOWN
    latin = _LATIN.subn("", text)[1]
    cjk = _CJK.subn("", text)[1] if latin < letters else 0
    han, total = HAN_WEIGHT * cjk, letters + (HAN_WEIGHT - 1) * cjk
    if latin >= dominance * total:
        return EN
    if han >= dominance * total:
        return ZH
    return MIXED if latin and han and latin + han > total / 2 else OTHER


def detect_languages(texts: Iterable[str | None], dominance: float = 0.8) -> list[str]:
    """`detect_language` over a column of texts."""
    return [detect_language(t, dominance) for t in texts]
