"""Text preprocessing for items and reviews: the configurable pipeline, item texts and keywords.

`TextPreprocessor` ties cleaning (`text_clean`), language detection (`text_lang`) and tokenisation
(`text_tokenize`) to the `[features.text]` settings so every consumer (keyword extraction, search,
text encoders, review analytics) sees identical tokens.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

import pandas as pd

from vitrina.config import Config
from vitrina.features.text_clean import clean_text, is_missing
from vitrina.features.text_lang import detect_language, detect_languages
from vitrina.features.text_tokenize import load_jieba, stem, stopwords, tokenize

__all__ = [
    "DEFAULT_FIELDS",
    "TextPreprocessor",
    "clean_text",
    "detect_language",
    "detect_languages",
    "extract_keywords",
    "item_text",
    "jieba_keywords",
    "stem",
    "stopwords",
    "tokenize",
]

DEFAULT_FIELDS: tuple[str, ...] = ("title", "description", "category_path", "brand")


def _is_number(token: str) -> bool:
    return token.replace(".", "").isdigit()


@dataclasses.dataclass(frozen=True)
class TextPreprocessor:
    """Clean, tokenise and filter text the same way everywhere; defaults mirror `[features.text]`."""

    lowercase: bool = True
    remove_stopwords: bool = True
    stem: bool = False
    min_token_len: int = 1
    keep_numbers: bool = True
    fields: tuple[str, ...] = DEFAULT_FIELDS
    language_dominance: float = 0.8

    def __post_init__(self) -> None:
        if self.min_token_len < 1:
            raise ValueError(f"min_token_len must be at least 1, got {self.min_token_len}")
        if not 0.5 < self.language_dominance <= 1.0:
            raise ValueError(f"language_dominance must be in (0.5, 1], got {self.language_dominance}")

    @classmethod
    def from_config(cls, cfg: Config) -> TextPreprocessor:
        """The `[features.text]` section; a key this class does not know is named in the error
        (`datasets`, the per-dataset fields, is read by `featurize.dataset_text_fields`)."""
        section = cfg.section("features.text", {f.name for f in dataclasses.fields(cls)} | {"datasets"})
        section.pop("datasets", None)
        if "fields" in section:  # TOML gives a list; `--set features.text.fields=title` a lone string
            raw = section["fields"]
            section["fields"] = (raw,) if isinstance(raw, str) else tuple(raw)
        return cls(**section)

    def clean(self, text: str | None) -> str:
        """The canonical string that tokens, language and text encoders all start from."""
        return clean_text(text, self.lowercase)

    def language(self, text: str | None) -> str:
        """Language of the cleaned text, so markup and links do not count as English."""
        return detect_language(self.clean(text), self.language_dominance)

    def tokens(self, text: str | None) -> list[str]:
        """Cleaned, tokenised, filtered (and optionally stemmed) tokens of one text."""
        tokens = tokenize(self.clean(text))
        stop = stopwords() if self.remove_stopwords else frozenset()
        min_len, keep_numbers = self.min_token_len, self.keep_numbers
        keys = tokens if self.lowercase else [t.lower() for t in tokens]
        kept = [
            key if self.stem else tok
            for tok, key in zip(tokens, keys, strict=True)
            if len(tok) >= min_len and key not in stop and (keep_numbers or not _is_number(tok))
        ]
        return [stem(t) for t in kept] if self.stem else kept

    def batch(self, texts: Iterable[str | None]) -> list[list[str]]:
        """`tokens` over a column of texts, in order."""
        return [self.tokens(t) for t in texts]


def _field_values(items: pd.DataFrame, name: str) -> list[Any]:
    """A column's values, or for "attributes.KEY" that key of each row's attributes dict (None when absent)."""
    if name.startswith("attributes.") and "attributes" in items.columns:
        key = name.split(".", 1)[1]
        return [a.get(key) if isinstance(a, dict) else None for a in items["attributes"].tolist()]
    return items[name].tolist()


def item_text(items: pd.DataFrame, fields: Sequence[str] = DEFAULT_FIELDS) -> list[str]:
    """One text per item row (in row order): the given fields joined by ". ", missing ones skipped.

    A field is a column or "attributes.KEY" (a dataset-specific attribute, e.g. the Amazon Sports
    `attributes.keywords_generated`). Raw, not cleaned: pass it to `TextPreprocessor.clean` /
    `tokens` or to a text encoder.
    """
    missing = [f for f in fields if f not in items.columns and not f.startswith("attributes.")]
    if missing:
        raise ValueError(f"unknown item field(s) {missing}; the items frame has {list(items.columns)}")
    texts = []
    for values in zip(*(_field_values(items, f) for f in fields), strict=True):
        parts = [s for v in values if not is_missing(v) and (s := str(v).strip())]
        texts.append(". ".join(parts))
    return texts


def extract_keywords(
    texts: Iterable[str | None], top_k: int = 10, preprocessor: TextPreprocessor | None = None
) -> list[list[tuple[str, float]]]:
    """The `top_k` highest TF-IDF tokens of each text, scored against the texts given as the corpus.

    Weights follow scikit-learn's TfidfVectorizer defaults (raw counts x smooth idf
    ln((1 + n) / (1 + df)) + 1, L2-normalised per text); ties break alphabetically for stable output.
    """
    docs = (preprocessor or TextPreprocessor()).batch(texts)
    df = Counter(t for doc in docs for t in set(doc))
    idf = {t: math.log((1 + len(docs)) / (1 + c)) + 1.0 for t, c in df.items()}
    result: list[list[tuple[str, float]]] = []
    for doc in docs:
        scores = {t: c * idf[t] for t, c in Counter(doc).items()}
        norm = math.sqrt(sum(s * s for s in scores.values())) or 1.0
        best = heapq.nsmallest(top_k, scores.items(), key=lambda kv: (-kv[1], kv[0]))
        result.append([(t, s / norm) for t, s in best])
    return result


def _jieba_analyse() -> ModuleType:
    load_jieba()
    with warnings.catch_warnings():
        # jieba.analyse reads its IDF table through an unclosed file at import.
        warnings.simplefilter("ignore", ResourceWarning)
        import jieba.analyse
    return jieba.analyse


def jieba_keywords(text: str | None, top_k: int = 10, method: str = "tfidf") -> list[tuple[str, float]]:
    """Keywords of one Chinese text without a corpus: jieba's TF-IDF with its IDF table from a large
    general corpus ("tfidf"), or TextRank over word co-occurrence, nouns and verbs only ("textrank").
    """
    analyse = _jieba_analyse()
    extractors: dict[str, Any] = {"tfidf": analyse.extract_tags, "textrank": analyse.textrank}
    if method not in extractors:
        raise ValueError(f"unknown keyword method {method!r}; use one of {', '.join(extractors)}")
    return [(w, float(s)) for w, s in extractors[method](clean_text(text), topK=top_k, withWeight=True)]
