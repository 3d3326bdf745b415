"""Segments: k chosen on held-out users recovers planted groups, each described by what its users do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vitrina.analytics.segments import describe, plot_segments, segment_users


def test_recovers_planted_groups_and_describes_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    group = np.repeat(np.arange(3), 100)
    vectors = centres[group] + rng.normal(0, 0.5, (300, 3))
    users = [f"u{i}" for i in range(300)]
    seg = segment_users(vectors, ks=range(2, 7), seed=0)
    assert seg.k == 3 and max(seg.silhouette, key=seg.silhouette.get) == 3
    # Each found segment is one planted group.
    assert all(len(np.unique(seg.labels[group == g])) == 1 for g in range(3))
    cats = ["Garden", "Tools > Drills", "Clothing > Dresses"]
    items = pd.DataFrame({"item_id": [f"i{c}" for c in range(3)], "category_path": cats, "price": [10.0, 100.0, 40.0]})
    events = pd.DataFrame({"user_id": users, "item_id": [f"i{g}" for g in group]})
    mood = pd.Series(np.where(group == 0, 0.9, 0.2), index=users)
    described = describe(seg, users, events, items, sentiment=mood)
    for s in described.segments:
        planted = int(group[seg.labels == s.segment][0])
        assert s.users == 100 and s.top_categories[0][0] == cats[planted] and s.top_categories[0][2] == 3.0
        assert s.median_price == items["price"][planted] and s.events_per_user == 1.0
        assert abs(s.sentiment - (0.9 if planted == 0 else 0.2)) < 1e-9
    assert described.to_dict(users)["assignment"]["u0"] == int(seg.labels[0])
    assert plot_segments(vectors, described, tmp_path / "s.png", "t").read_bytes()[:4] == b"\x89PNG"
