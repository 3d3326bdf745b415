"""Aspect summaries: what reviews of an item or a category praise and complain about.

An aspect is a noun (jieba part-of-speech n, nz, vn, nr-free for Chinese; non-stop-words of three
letters or more for English) mentioned in a review. Each mention carries the review's signed
sentiment, 2 · P(positive) − 1; an aspect's score is the sum over its mentions, so frequent and
clearly polar aspects rank first, and aspects mentioned in fewer than `min_count` reviews are left out.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitrina.features.text_tokenize import load_jieba, stopwords
from vitrina.plotting import pyplot, save_figure

__all__ = ["Aspect", "aspect_nouns", "plot_aspects", "summarise_aspects"]

_NOUN_TAGS = ("n", "nz", "vn", "ng", "nt")
# Nouns that name no aspect of a product ("feeling", "overall", "result", "thing", "time", ...).
_GENERIC_ZH = frozenset(
    [
        "感觉",
        "总体",
        "整体",
        "有点",
        "结果",
        "东西",
        "时候",
        "一次",
        "感受",
        "情况",
        "地方",
        "事情",
        "问题",
        "原因",
        "总的来说",
    ]
)


@dataclass(frozen=True)
class Aspect:
    term: str
    score: float  # sum of signed sentiment over the reviews mentioning it
    mentions: int
    positive_share: float


@functools.cache
def _posseg():  # jieba.posseg, loaded once
    load_jieba()
    import jieba.posseg

    return jieba.posseg


def aspect_nouns(text: str) -> set[str]:
    """The aspect terms of one review (each counted once per review)."""
    if text.isascii():
        stop = stopwords("en")
        return {w for w in text.lower().replace("'", " ").split() if len(w) >= 3 and w.isalpha() and w not in stop}
    stop = stopwords("zh")
    return {
        p.word
        for p in _posseg().cut(text)
        if p.flag in _NOUN_TAGS and len(p.word) >= 2 and p.word not in stop and p.word not in _GENERIC_ZH
    }


def summarise_aspects(
    texts: Sequence[str], probabilities: np.ndarray, top_k: int = 10, min_count: int = 3
) -> dict[str, list[Aspect]]:
    """The `top_k` most positive and most negative aspects of these reviews."""
    signed = 2.0 * np.asarray(probabilities, dtype=float) - 1.0
    score: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    positive: dict[str, int] = defaultdict(int)
    for text, s in zip(texts, signed, strict=True):
        for term in aspect_nouns(text or ""):
            score[term] += float(s)
            count[term] += 1
            positive[term] += int(s > 0)
    aspects = [Aspect(t, score[t], count[t], positive[t] / count[t]) for t in score if count[t] >= min_count]
    return {
        "positive": sorted((a for a in aspects if a.score > 0), key=lambda a: -a.score)[:top_k],
        "negative": sorted((a for a in aspects if a.score < 0), key=lambda a: a.score)[:top_k],
    }


def plot_aspects(summary: dict[str, list[Aspect]], title: str, path: str | Path) -> Path:
    """Two bar charts: praised aspects (green) and complaints (red), by score."""
    plt = pyplot()
    from matplotlib import font_manager

    # A CJK font when the system has one (Debian: fonts-noto-cjk), else the default.
    cjk = [f.name for f in font_manager.fontManager.ttflist if "CJK" in f.name or "WenQuanYi" in f.name]
    if cjk:
        plt.rcParams["font.family"] = cjk[0]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, side, colour in zip(axes, ("positive", "negative"), ("#3a923a", "#c0392b"), strict=True):
        items = summary[side][::-1]
        ax.barh([a.term for a in items], [abs(a.score) for a in items], color=colour)
        ax.set_title(f"{side} aspects")
        ax.set_xlabel("|sum of signed sentiment| over mentions")
    fig.suptitle(title)
    return save_figure(fig, path)
