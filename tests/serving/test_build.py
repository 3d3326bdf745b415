"""Parts of the serving build: per-item review sentiment and "bought together" weights."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vitrina.data.idmap import IdMap
from vitrina.serving.build import item_sentiment, together_matrix


class _Reader:
    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.array([0.9 if "good" in t else 0.1 for t in texts])


def test_item_sentiment_averages_each_items_reviews() -> None:
    items = IdMap(["a", "b", "c"], "item")
    reviews = pd.DataFrame({"item_id": ["a", "a", "b", "zzz"], "text": ["good", "bad", "good", "good"]})
    mood = item_sentiment(items, reviews, _Reader())
    np.testing.assert_allclose(mood[:2], [0.5, 0.9])
    assert np.isnan(mood[2])


def test_together_from_pairs_or_from_shared_carts() -> None:
    items = IdMap(["a", "b", "c"], "item")
    pairs = pd.DataFrame({"item_id": ["a", "x"], "other_id": ["b", "a"], "score": [0.5, 1.0]})
    given = together_matrix(items, pairs, pd.DataFrame(columns=["user_id", "item_id", "type"]))
    assert given[0, 1] == np.float32(0.5) and given.nnz == 1
    events = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2", "u3"],
            "item_id": ["a", "c", "a", "c", "b"],
            "type": ["cart", "purchase", "purchase", "purchase", "view"],
        }
    )
    bought = together_matrix(items, None, events)
    assert bought[0, 2] == 2 and bought[2, 0] == 2 and bought[0, 0] == 0 and bought[1].nnz == 0
