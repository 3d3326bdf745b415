"""User segments: k-means on user vectors, k chosen on held-out users, each segment described.

The number of segments is the one whose clustering, fitted on 80% of the users, gives the best
silhouette on the other 20% (assigned to their nearest centre): a criterion on users the clustering
never saw, so a larger k does not win by fitting noise. Each segment is described by its size, the
categories its users interact with most (and how much more than the average user: lift), its price
level, its activity and, when review sentiment is known, its mean sentiment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from vitrina.plotting import pyplot, save_figure

__all__ = ["Segment", "Segmentation", "describe", "plot_segments", "segment_users"]


@dataclass
class Segment:
    segment: int
    users: int
    top_categories: list[tuple[str, float, float]]  # (category, share of the segment's events, lift)
    median_price: float | None
    events_per_user: float
    sentiment: float | None = None

    @property
    def label(self) -> str:
        return f"seg-{self.segment}"


@dataclass
class Segmentation:
    k: int
    labels: np.ndarray  # segment per user row
    centres: np.ndarray
    silhouette: dict[int, float]  # k -> held-out silhouette
    segments: list[Segment] = field(default_factory=list)

    def to_dict(self, user_ids: Sequence[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "k": self.k,
            "silhouette_by_k": {str(k): v for k, v in self.silhouette.items()},
            "segments": [{**asdict(s), "label": s.label} for s in self.segments],
        }
        if user_ids is not None:
            out["assignment"] = dict(zip(map(str, user_ids), self.labels.tolist(), strict=True))
        return out


def segment_users(vectors: np.ndarray, ks: Sequence[int] = range(2, 11), seed: int = 0) -> Segmentation:
    """k-means with k chosen by silhouette on held-out users; the final clustering uses everyone."""
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) < 20:
        raise ValueError(f"segmenting needs at least 20 users, got {len(x)}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x))
    cut = int(0.8 * len(x))
    fit_rows, held = perm[:cut], perm[cut:]
    sample = held[: min(len(held), 5000)]
    scores: dict[int, float] = {}
    for k in ks:
        if k >= len(sample):
            break
        km = KMeans(k, n_init=4, random_state=seed).fit(x[fit_rows])
        labels = km.predict(x[sample])
        if len(np.unique(labels)) > 1:
            scores[int(k)] = float(silhouette_score(x[sample], labels))
    if not scores:
        raise ValueError("no k gave more than one segment on the held-out users")
    k = max(scores, key=lambda kk: scores[kk])
    final = KMeans(k, n_init=8, random_state=seed).fit(x)
    return Segmentation(k, final.labels_.astype(int), final.cluster_centers_, scores)


def describe(
    seg: Segmentation,
    user_ids: Sequence[str],
    events: pd.DataFrame,
    items: pd.DataFrame,
    sentiment: pd.Series | None = None,
    top: int = 3,
) -> Segmentation:
    """Fill `seg.segments` from the users' events (user_id, item_id) and the items' category_path
    (top level and the level below) and price; `sentiment`: mean P(positive) per user id."""
    label = pd.Series(seg.labels, index=pd.Index(list(map(str, user_ids))))
    ev = events[["user_id", "item_id"]].astype(str)
    ev = ev[ev["user_id"].isin(label.index)]
    meta = items.set_index(items["item_id"].astype(str))
    path = meta["category_path"].reindex(ev["item_id"]).fillna("(none)").astype(str)
    ev = ev.assign(
        segment=label.reindex(ev["user_id"]).to_numpy(),
        category=path.str.split(" > ").str[:2].str.join(" > ").to_numpy(),
        price=pd.to_numeric(meta["price"].reindex(ev["item_id"]), errors="coerce").to_numpy(),
    )
    overall = ev["category"].value_counts(normalize=True)
    segments = []
    for s in range(seg.k):
        mine = ev[ev["segment"] == s]
        users = int((seg.labels == s).sum())
        shares = mine["category"].value_counts(normalize=True).head(top)
        cats = [(c, float(v), float(v / overall[c])) for c, v in shares.items()]
        price = mine["price"].median() if mine["price"].notna().any() else None
        mood = None
        if sentiment is not None:
            members = label.index[label.to_numpy() == s]
            values = sentiment.reindex(members).dropna()
            mood = float(values.mean()) if len(values) else None
        segments.append(
            Segment(s, users, cats, None if price is None else float(price), len(mine) / max(users, 1), mood)
        )
    seg.segments = segments
    return seg


def plot_segments(vectors: np.ndarray, seg: Segmentation, path: str | Path, title: str) -> Path:
    """The users' vectors in 2-D (PCA), coloured by segment, labelled with each one's top category."""
    plt = pyplot()

    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for s in seg.segments:
        sel = seg.labels == s.segment
        name = s.top_categories[0][0] if s.top_categories else ""
        ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.5, label=f"{s.label} ({s.users}): {name}")
    ax.legend(markerscale=4, fontsize=7)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return save_figure(fig, path)
