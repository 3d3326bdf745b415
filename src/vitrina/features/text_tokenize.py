"""Tokens from cleaned text: jieba for Chinese runs, a regex for everything else; stop words; stems.

Mixed titles ("Apple iPhone 15 手机 黑色") are split into runs of Han ideographs and the rest, so
English never pays for jieba and jieba never sees Latin words. jieba loads its dictionary (about a
second) on the first Chinese text only, once per process.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from importlib import resources
from types import ModuleType
from typing import Any

from vitrina.features.text_lang import CJK_CLASS

# A word: letters/digits (no "_", no Han), joined by "-" or an apostrophe ("t-shirt", "30-inch",
# "don't"), or by "." between digits ("3.5mm"). Everything else (punctuation, symbols) is dropped.
_WORD = rf"[^\W_{CJK_CLASS}]+(?:(?:[-'’]|(?<=\d)\.(?=\d))[^\W_{CJK_CLASS}]+)*"
_WORD_RE = re.compile(_WORD)
# Either a run of Han ideographs (group 1, for jieba) or a word (group 2).
_PIECE_RE = re.compile(rf"([{CJK_CLASS}]+)|({_WORD})")
STOPWORD_LANGUAGES = ("en", "zh")


@functools.cache
def load_jieba() -> ModuleType:
    """jieba with its dictionary loaded and its start-up chatter silenced; first call only."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def tokenize(text: str) -> list[str]:
    """Tokens of a cleaned text in order: jieba words for Chinese, regex words for the rest.

    Curly apostrophes become straight ones and a possessive "'s" is dropped ("women's" -> "women").
    """
    if text.isascii():
        tokens = _WORD_RE.findall(text)
    else:
        tokens = []
        for han, word in _PIECE_RE.findall(text):
            if han:
                tokens.extend(load_jieba().lcut(han))
            else:
                tokens.append(word)
        if "’" in text:
            tokens = [t.replace("’", "'") for t in tokens]
    if "'" in text or "’" in text:
        tokens = [t[:-2] if t.endswith(("'s", "'S")) else t for t in tokens]
    return tokens


@functools.cache
def stopwords(language: str | None = None) -> frozenset[str]:
    """The packaged stop words (lower case) of "en", "zh", or both when `language` is None.

    Negations (not, no, 不, 没有, ...) are deliberately absent: reviews' sentiment depends on them.
    """
    if language is None:
        return frozenset().union(*(stopwords(lang) for lang in STOPWORD_LANGUAGES))
    if language not in STOPWORD_LANGUAGES:
        raise ValueError(f"no stop words for language {language!r}; known: {', '.join(STOPWORD_LANGUAGES)}")
    text = resources.files("vitrina.features").joinpath(f"stopwords_{language}.txt").read_text(encoding="utf-8")
    return frozenset(w for line in text.splitlines() if (w := line.strip()) and not w.startswith("#"))


@functools.cache
def _stemmer() -> tuple[Any, threading.Lock]:
    import snowballstemmer

    # Snowball stemmers keep per-word state on the object, hence the lock for threaded callers.
    return snowballstemmer.stemmer("english"), threading.Lock()


@functools.lru_cache(maxsize=1 << 16)
def stem(token: str) -> str:
    """Snowball (Porter2) English stem of a lower-case ASCII token; others (Chinese, accented) unchanged.

    Cached: shop vocabularies are small and repetitive, and the stemmer is pure Python.
    """
    if not token.isascii():
        return token
    stemmer, lock = _stemmer()
    with lock:
        return stemmer.stemWord(token)
