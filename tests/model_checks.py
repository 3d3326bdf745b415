"""Checks every recommender must pass, shared by the model tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitrina.models import Recommender
from vitrina.models.content import MultimodalRecommender


def assert_reloads_identically(model: Recommender, path: Path, n_users: int = 30) -> Recommender:
    """Save, load, and get the same type, parameters, scores and lists (and session scores for
    content models) back; returns the loaded copy for further checks."""
    model.save(path)
    back = Recommender.load(path)
    assert type(back) is type(model) and back.params == model.params
    users = np.arange(n_users)
    assert np.array_equal(back.score(users), model.score(users))
    assert back.recommend("u3", k=5) == model.recommend("u3", k=5)
    if isinstance(model, MultimodalRecommender):
        assert np.array_equal(back.session_scores([1, 2]), model.session_scores([1, 2]))
    return back
