"""Which campaigns may show for a request: keyword match on the query, semantic match of the query
or page context, visual match to the item being viewed; then category, audience and date targeting.

Keyword match types follow the search-ads convention. With words taken through the same
`TextPreprocessor` as search (lower case, stop words dropped):
- exact: the query's words are the keyword's words, in order;
- phrase: the keyword's words appear together, in order, inside the query;
- broad: every keyword word's stem appears somewhere in the query.
Semantic and visual matches compare unit vectors (cosine) against a threshold. A feed (no query,
no viewed item) matches every campaign its targeting allows: the pCTR model ranks them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from vitrina.ads.campaign import Campaign, Keyword
from vitrina.features.text import TextPreprocessor, stem

__all__ = ["AdRequest", "CampaignMatcher", "keyword_matches"]

_WORDS = TextPreprocessor()


def _contains(seq: list[str], part: list[str]) -> bool:
    n = len(part)
    return any(seq[i : i + n] == part for i in range(len(seq) - n + 1))


@functools.lru_cache(maxsize=1 << 16)
def _keyword_words(text: str) -> tuple[str, ...]:
    """A bid phrase's words, tokenised once rather than for every request it is tested against."""
    return tuple(_WORDS.tokens(text))


def keyword_matches(keyword: Keyword, query_words: list[str]) -> bool:
    """Does a query (its preprocessed words) match the keyword under its match type?"""
    words = list(_keyword_words(keyword.text))
    if not words:
        return False
    if keyword.match == "exact":
        return query_words == words
    if keyword.match == "phrase":
        return _contains(query_words, words)
    stems = {stem(w) for w in query_words}
    return all(stem(w) in stems for w in words)


@dataclass
class AdRequest:
    """Where ads may appear: a search query, a viewed item, or a feed (no query, no item)."""

    day: date
    query: str | None = None
    user_id: str | None = None
    segments: tuple[str, ...] = ()
    viewed_item: str | None = None
    category: str | None = None  # the page's category (a search filter, the viewed item's category)
    query_vector: np.ndarray | None = None  # the query text or page context, embedded
    viewed_image: np.ndarray | None = None  # the viewed item's photo vector


@dataclass
class CampaignMatcher:
    """Candidate (campaign, item, how it matched, similarity) pairs for a request.

    `text_vectors` / `image_vectors` map item ids to unit vectors of the advertised items; an item
    without one takes no part in that kind of match.
    """

    campaigns: Sequence[Campaign]
    text_vectors: Mapping[str, np.ndarray] = field(default_factory=dict)
    image_vectors: Mapping[str, np.ndarray] = field(default_factory=dict)
    item_categories: Mapping[str, str] = field(default_factory=dict)
    semantic_threshold: float = 0.8
    visual_threshold: float = 0.8

    def match(self, request: AdRequest) -> list[tuple[Campaign, str, str, float]]:
        words = _WORDS.tokens(request.query) if request.query else []
        out = []
        for campaign in self.campaigns:
            if not (campaign.running(request.day) and campaign.targets_segment(request.segments)):
                continue
            keyword_hit = bool(words) and any(keyword_matches(k, words) for k in campaign.keywords)
            for item in campaign.items:
                if item == request.viewed_item:
                    continue  # no ad for the product already on the screen
                if not campaign.targets_category(self.item_categories.get(item)):
                    continue
                if request.category and not campaign.targets_category(request.category) and not keyword_hit:
                    continue
                how, similarity = self._how(campaign, item, request, keyword_hit)
                if how:
                    out.append((campaign, item, how, similarity))
        return out

    def _how(self, campaign: Campaign, item: str, request: AdRequest, keyword_hit: bool) -> tuple[str, float]:
        text = self.text_vectors.get(item)
        similarity = (
            float(text @ request.query_vector) if text is not None and request.query_vector is not None else 0.0
        )
        if keyword_hit:
            return "keyword", similarity
        if request.query is None and request.viewed_item is None:
            return "feed", 1.0  # a feed has no context to match: targeting chose, pCTR will rank
        if request.query_vector is not None and similarity >= self.semantic_threshold:
            return "semantic", similarity
        image = self.image_vectors.get(item)
        if image is not None and request.viewed_image is not None:
            visual = float(image @ request.viewed_image)
            if visual >= self.visual_threshold:
                return "visual", visual
        return "", 0.0
