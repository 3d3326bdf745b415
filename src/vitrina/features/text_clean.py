"""Text cleaning: one canonical form of shop text before language detection and tokenisation.

Product titles, descriptions and reviews arrive with HTML, entities, full-width characters, links,
"!!!!" and stray invisible characters; every downstream step (tokens, keywords, encoders) should see
the same clean string. Cheap substring checks skip the regexes most short titles do not need.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any

import pandas as pd

# Whole elements whose content is never shop text.
_SCRIPT_STYLE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
# A tag must start with a letter (or "/" + letter, "!"), so "3 < 5 > 2" survives.
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<![A-Za-z][^<>]*>")
# Invisible characters NFKC keeps: C0/C1 controls (bar whitespace), soft hyphen, zero-width and
# direction marks, word joiners and the byte-order mark (the reviews-zh CSV starts with one).
_INVISIBLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\xad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Scheme or www. links, and bare domains on a few common TLDs; URL characters only (RFC 3986), so
# Chinese text glued to a link survives, and a link never ends in sentence punctuation. Lookarounds,
# not \b: Han characters are word characters, so "看http://..." has no word boundary.
_URL_CHARS = r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]"
_URL_END = r"[A-Za-z0-9/#=_~-]"
_URL = re.compile(
    rf"(?<![A-Za-z0-9])(?:(?:https?|ftp)://|www\.){_URL_CHARS}*{_URL_END}"
    rf"|(?<![A-Za-z0-9.-])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:com|net|org|cn)(?![A-Za-z0-9])"
    rf"(?:/{_URL_CHARS}*{_URL_END})?",
    re.IGNORECASE,
)
# A run of one repeated punctuation or symbol character ("!!!!", "。。。", "——", "___").
_REPEATED_PUNCT = re.compile(r"([^\w\s]|_)\1+")
_SPACES = re.compile(r"\s+")
# Space left before closing punctuation by a removed tag or link ("cool <b>linen</b>." -> "cool linen.").
_SPACE_BEFORE_PUNCT = re.compile(r" ([.,!?;:)\]}。、])")


def is_missing(value: Any) -> bool:
    """None, NaN, pd.NA and NaT: what frame columns hold for an absent text."""
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _strip_markup(text: str) -> str:
    """Tags become spaces so "<p>a</p><p>b</p>" keeps its words apart."""
    return _TAG.sub(" ", _COMMENT.sub(" ", _SCRIPT_STYLE.sub(" ", text)))


def clean_text(text: str | None, lowercase: bool = False) -> str:
    """Canonical text: no markup, entities, links, e-mails or invisible characters; NFKC; one space.

    None, NaN and empty input give "" so callers can feed frame columns as they are.
    """
    if not isinstance(text, str):
        if is_missing(text):
            return ""
        text = str(text)
    if "<" in text:
        text = _strip_markup(text)
    if "&" in text:
        text = html.unescape(text)
        if "<" in text:  # markup that arrived escaped ("&lt;br/&gt;"), common in scraped descriptions
            text = _strip_markup(text)
    if not text.isascii():
        # Full-width letters, digits and punctuation to their ASCII forms, ligatures split, U+3000 to space.
        text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    if "@" in text:
        text = _EMAIL.sub(" ", text)
    if "." in text or "/" in text:
        text = _URL.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", _REPEATED_PUNCT.sub(r"\1", text))).strip()
    return text.lower() if lowercase else text
