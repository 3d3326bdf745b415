"""Image–text alignment: projection heads that map frozen text and image features into one space.

Trained with a symmetric InfoNCE loss on the catalogue's own (photo, product text) pairs, so a text
query finds photos and a photo finds products. The objective is

    L = w_cls * (L_text + L_image) + λ * L_align

where L_align is the symmetric contrastive loss (text→image and image→text, in-batch negatives,
learned or fixed temperature) and L_text / L_image are optional per-modality terms: each head's
embedding predicts the item's class (e.g. the product type) through one shared cosine classifier,
so both modalities are pulled to the same class prototypes.

Identical texts are true matches. Colour variants of one product often share their text, and a
text query cannot tell them apart, so rows are put in *duplicate groups* (by default: identical
text feature rows, which the feature store makes bit-identical for identical texts). In the loss,
every member of the query's group in the batch is a positive (the likelihood of "any positive",
log Σ_pos e^l − log Σ_all e^l); in `cross_modal_recall` a text query is answered by the photo of any
item of its group, and photo queries rank the group's distinct texts once each.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vitrina import __version__

__all__ = [
    "AlignReport",
    "ContrastiveAligner",
    "cross_modal_recall",
    "duplicate_groups",
    "info_nce",
    "recall_at_k",
]

Head = Literal["linear", "mlp"]
KS = (1, 5, 10)
# Scores closer than this count as ties (identical embeddings can differ in the last float bits
# depending on where a row falls in a blocked matrix product).
_TIE_DECIMALS = 5


def duplicate_groups(features: np.ndarray) -> np.ndarray:
    """Group id per row: rows with identical values share one (identical texts -> identical vectors)."""
    features = np.ascontiguousarray(features)
    _, inverse = np.unique(features, axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def recall_at_k(
    queries: np.ndarray,
    candidates: np.ndarray,
    query_groups: np.ndarray,
    candidate_groups: np.ndarray,
    ks: tuple[int, ...] = KS,
    block: int = 1024,
) -> dict[str, float]:
    """Recall@k of ranking all `candidates` by dot product for each query: a hit when a candidate of
    the query's group is among the top k. Ties are broken at random, as an exact expectation, so
    constant scores give the random baseline 1 − C(c−r, k) / C(c, k) (r relevant of c candidates).
    """
    queries, candidates = np.asarray(queries, np.float32), np.asarray(candidates, np.float32)
    query_groups, candidate_groups = np.asarray(query_groups), np.asarray(candidate_groups)
    if not np.isin(query_groups, candidate_groups).all():
        raise ValueError("every query needs at least one relevant candidate (a candidate of its group)")
    hits = {k: 0.0 for k in ks}
    for start in range(0, len(queries), block):
        scores = np.round(queries[start : start + block] @ candidates.T, _TIE_DECIMALS)
        relevant = query_groups[start : start + block, None] == candidate_groups[None, :]
        best = np.where(relevant, scores, -np.inf).max(axis=1, keepdims=True)
        greater = ((scores > best) & ~relevant).sum(axis=1)
        tied_other = ((scores == best) & ~relevant).sum(axis=1)
        tied_relevant = ((scores == best) & relevant).sum(axis=1)
        for k in ks:
            # Hit unless the first k - greater places of the randomly ordered tied block hold no
            # relevant one: P(miss) = C(t, m) / C(t + r, m).
            slots = k - greater
            miss = np.ones(len(slots))
            for i in range(k):
                active = i < slots
                ratio = np.maximum(tied_other - i, 0) / np.maximum(tied_other + tied_relevant - i, 1)
                miss = np.where(active, miss * ratio, miss)
            hits[k] += float(np.where(slots > 0, 1.0 - miss, 0.0).sum())
    return {f"recall@{k}": hits[k] / len(queries) for k in ks}


def cross_modal_recall(
    text: np.ndarray, image: np.ndarray, groups: np.ndarray | None = None, ks: tuple[int, ...] = KS
) -> dict[str, dict[str, float]]:
    """Text→image and image→text Recall@k over paired rows (row i: item i's text and photo).

    With `groups` (duplicate-group ids, see the module doc) a text query hits the photo of any item
    of its group, and an image query ranks one text per distinct group. Without, only the item's own
    counterpart counts and identical texts are ranked as ties (broken at random, in expectation).
    """
    if len(text) != len(image):
        raise ValueError(f"text has {len(text)} rows but image has {len(image)}")
    own = np.arange(len(text)) if groups is None else np.asarray(groups)
    _, first = np.unique(own, return_index=True)
    return {
        "text_to_image": recall_at_k(text, image, own, own, ks),
        "image_to_text": recall_at_k(image, text[first], own, own[first], ks),
    }


def _watch(metrics: dict[str, dict[str, float]]) -> float:
    """Early stopping and selection score: mean of text→image and image→text Recall@10."""
    return (metrics["text_to_image"]["recall@10"] + metrics["image_to_text"]["recall@10"]) / 2


@dataclasses.dataclass
class AlignReport:
    """What `fit` did: epochs run, the epoch kept, its validation recall, the watch history."""

    epochs: int = 0
    best_epoch: int = 0
    best_score: float = 0.0
    valid: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    history: list[float] = dataclasses.field(default_factory=list)
    temperature: float = 0.0
    seconds: float = 0.0


class _Head(nn.Module):
    """Standardised features -> L2-normalised joint embedding: a linear map, plus a one-hidden-layer
    MLP on a residual path for `kind="mlp"`."""

    def __init__(self, d_in: int, dim: int, kind: Head, hidden: int, dropout: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(d_in))
        self.register_buffer("scale", torch.ones(d_in))
        self.linear = nn.Linear(d_in, dim)
        self.mlp = (
            nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
            if kind == "mlp"
            else None
        )

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        if self.mlp is not None:
            z = z + self.mlp(x)
        return F.normalize(z, dim=-1)


class _Model(nn.Module):
    def __init__(self, text_dim: int, image_dim: int, n_classes: int, p: dict[str, Any]) -> None:
        super().__init__()
        self.text = _Head(text_dim, p["dim"], p["head"], p["hidden"], p["dropout"])
        self.image = _Head(image_dim, p["dim"], p["head"], p["hidden"], p["dropout"])
        init = np.log(1.0 / (p["temperature"] or p["init_temperature"]))
        self.logit_scale = nn.Parameter(torch.tensor(float(init)), requires_grad=p["temperature"] is None)
        self.classes = nn.Linear(p["dim"], n_classes, bias=False) if n_classes else None


def _check_matrix(x: Any, what: str, dim: int | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array [items, dim], got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{what} has {x.shape[1]} columns but the aligner was fitted on {dim}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(f"{what}: {int(bad.sum())} rows hold NaN or inf (first: row {int(np.argmax(bad))})")
    return x


def _check_index(idx: Any, n: int, what: str) -> np.ndarray:
    idx = np.asarray(idx)
    if idx.ndim != 1 or len(idx) == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{what} must be a non-empty 1-D array of row numbers")
    if idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"{what} holds rows outside 0..{n - 1}")
    return idx.astype(np.int64)


def info_nce(
    logits: torch.Tensor, positive: torch.Tensor, sim: torch.Tensor | None = None, hard: float = 0.0
) -> torch.Tensor:
    """Per-row "any positive" InfoNCE (rows are queries, `positive` marks their matches). `hard` > 0
    re-weights the negatives by exp(hard * sim), `sim` being the cosines (normalised to mean 1 per
    row, no gradient through the weights: Robinson et al. 2021), so near-misses count more than the
    easy bulk. Shared with the recommenders that align modality towers."""
    if hard > 0:
        if sim is None:
            raise ValueError("hard-negative weighting needs the cosine similarities `sim`")
        negative = ~positive
        weight = (hard * sim).masked_fill(positive, -torch.inf)
        log_mean = torch.logsumexp(weight, 1, keepdim=True) - negative.sum(1, keepdim=True).clamp(min=1).log()
        logits = torch.where(negative, logits + hard * sim - log_mean, logits)
    return (torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~positive, -torch.inf), 1)).mean()


class ContrastiveAligner:
    """Text and image projection heads into a shared `dim`-d space (see the module doc).

    Hyper-parameters: `head` "linear" or "mlp" (linear + residual MLP of width `hidden`);
    `temperature` None learns it (logit scale clamped to `max_logit_scale`, starting from
    `init_temperature`), a number fixes it; `input_dropout` and `noise` (Gaussian, in standardised
    units) augment the features during training; `hard_negatives` is the re-weighting strength
    (0: plain InfoNCE); `align_weight` (λ) and `class_weight` weigh L_align and L_text + L_image.
    Training stops when the validation score (mean of both directions' Recall@10) has not improved
    for `patience` epochs and keeps the best epoch.
    """

    def __init__(
        self,
        dim: int = 256,
        head: Head = "mlp",
        hidden: int = 1024,
        dropout: float = 0.1,
        input_dropout: float = 0.1,
        noise: float = 0.0,
        temperature: float | None = None,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        hard_negatives: float = 0.0,
        align_weight: float = 1.0,
        class_weight: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 1024,
        max_epochs: int = 200,
        patience: int = 10,
        seed: int = 0,
    ) -> None:
        if head not in ("linear", "mlp"):
            raise ValueError(f"head must be 'linear' or 'mlp', got '{head}'")
        if temperature is not None and temperature <= 0:
            raise ValueError(f"temperature must be positive (or None to learn it), got {temperature}")
        for name, value in (("dim", dim), ("hidden", hidden), ("batch_size", batch_size), ("max_epochs", max_epochs)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.params: dict[str, Any] = {
            "dim": dim,
            "head": head,
            "hidden": hidden,
            "dropout": dropout,
            "input_dropout": input_dropout,
            "noise": noise,
            "temperature": temperature,
            "init_temperature": init_temperature,
            "max_logit_scale": max_logit_scale,
            "hard_negatives": hard_negatives,
            "align_weight": align_weight,
            "class_weight": class_weight,
            "lr": lr,
            "weight_decay": weight_decay,
            "batch_size": batch_size,
            "max_epochs": max_epochs,
            "patience": patience,
            "seed": seed,
        }
        self.model: _Model | None = None
        self.report = AlignReport()

    @property
    def temperature(self) -> float:
        self._check_fitted()
        assert self.model is not None
        return float(1.0 / self.model.logit_scale.detach().exp())

    def fit(
        self,
        text: np.ndarray,
        image: np.ndarray,
        train_idx: np.ndarray,
        valid_idx: np.ndarray,
        groups: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        text_views: list[np.ndarray] | None = None,
        image_views: list[np.ndarray] | None = None,
        progress: bool = False,
    ) -> AlignReport:
        """Train on the pairs (text[i], image[i]) for i in `train_idx`, early-stopping on `valid_idx`.

        `groups`: duplicate-group id per row (default: identical text rows); `labels`: class per row
        for the per-modality terms (-1: unknown); `text_views` / `image_views`: other texts or
        photo views (e.g. mirrored) of the same items, same shape as `text` / `image`; each step
        draws one view per item at random, as augmentation. Validation reads `text` and `image`.
        """
        p = self.params
        text = _check_matrix(text, "text features")
        image = _check_matrix(image, "image features")
        if len(text) != len(image):
            raise ValueError(f"text features have {len(text)} rows but image features have {len(image)}")
        n = len(text)
        train_idx, valid_idx = _check_index(train_idx, n, "train_idx"), _check_index(valid_idx, n, "valid_idx")
        if np.intersect1d(train_idx, valid_idx).size:
            raise ValueError("train_idx and valid_idx share rows; validation must be held out")
        groups = duplicate_groups(text) if groups is None else np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups must have one id per row ({n}), got shape {groups.shape}")
        texts = [text] + [_check_matrix(v, f"text view {i}", text.shape[1]) for i, v in enumerate(text_views or [])]
        images = [image] + [
            _check_matrix(v, f"image view {i}", image.shape[1]) for i, v in enumerate(image_views or [])
        ]
        if any(len(v) != n for v in texts + images):
            raise ValueError(f"every text and image view needs {n} rows, one per item")
        n_classes = 0
        if labels is not None and p["class_weight"] > 0:
            labels = np.asarray(labels, dtype=np.int64)
            if labels.shape != (n,):
                raise ValueError(f"labels must have one class per row ({n}), got shape {labels.shape}")
            n_classes = int(labels.max()) + 1

        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(p["seed"])
            self.model = model = _Model(text.shape[1], image.shape[1], n_classes, p)
            for head, x in ((model.text, text), (model.image, image)):
                rows = torch.from_numpy(x[train_idx])
                head.mean.copy_(rows.mean(0))
                head.scale.copy_(rows.std(0).clamp(min=1e-6))
            self.report = self._train(texts, images, groups, labels, train_idx, valid_idx, progress)
        self.report.seconds = time.perf_counter() - start
        return self.report

    def _train(
        self,
        text_views: list[np.ndarray],
        image_views: list[np.ndarray],
        groups_np: np.ndarray,
        labels_np: np.ndarray | None,
        train_idx: np.ndarray,
        valid_idx: np.ndarray,
        progress: bool,
    ) -> AlignReport:
        p, model = self.params, self.model
        assert model is not None
        texts = torch.from_numpy(np.stack(text_views))  # [views, n, d]
        images = torch.from_numpy(np.stack(image_views))
        groups = torch.from_numpy(groups_np)
        labels = torch.from_numpy(labels_np) if model.classes is not None and labels_np is not None else None
        optimiser = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        max_scale = float(np.log(p["max_logit_scale"]))
        report = AlignReport()
        best_state = copy.deepcopy(model.state_dict())
        order = torch.from_numpy(train_idx)

        def augment(x: torch.Tensor) -> torch.Tensor:
            if p["noise"] > 0:
                x = x + p["noise"] * torch.randn_like(x)
            return F.dropout(x, p["input_dropout"]) if p["input_dropout"] > 0 else x

        epochs = tqdm(range(1, p["max_epochs"] + 1), desc="align", disable=not progress)
        for epoch in epochs:
            model.train()
            for batch in order[torch.randperm(len(order))].split(p["batch_size"]):
                text = texts[torch.randint(len(texts), (len(batch),)), batch]
                image = images[torch.randint(len(images), (len(batch),)), batch]
                zt = model.text(augment(model.text.standardise(text)))
                zi = model.image(augment(model.image.standardise(image)))
                sim = zt @ zi.T
                logits = model.logit_scale.exp() * sim
                positive = groups[batch, None] == groups[None, batch]
                hard, detached = p["hard_negatives"], sim.detach()
                loss = (
                    p["align_weight"]
                    * (info_nce(logits, positive, detached, hard) + info_nce(logits.T, positive.T, detached.T, hard))
                    / 2
                )
                if labels is not None and model.classes is not None:
                    weight = F.normalize(model.classes.weight, dim=-1)
                    y = labels[batch]
                    per_modality = sum(F.cross_entropy(16.0 * z @ weight.T, y, ignore_index=-1) for z in (zt, zi))
                    loss = loss + p["class_weight"] * per_modality
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0.0, max_scale)
            metrics = cross_modal_recall(
                self.embed_text(text_views[0][valid_idx]),
                self.embed_image(image_views[0][valid_idx]),
                groups_np[valid_idx],
            )
            score = _watch(metrics)
            report.history.append(score)
            report.epochs = epoch
            if score > report.best_score:
                report.best_epoch, report.best_score, report.valid = epoch, score, metrics
                best_state = copy.deepcopy(model.state_dict())
            epochs.set_postfix(valid=f"{score:.4f}", best=f"{report.best_score:.4f}")
            if epoch - report.best_epoch >= p["patience"]:
                break
        model.load_state_dict(best_state)
        report.temperature = self.temperature
        return report

    def _embed(self, head: _Head, x: np.ndarray, block: int = 4096) -> np.ndarray:
        head.eval()
        with torch.no_grad():
            out = [head(head.standardise(torch.from_numpy(x[s : s + block]))) for s in range(0, len(x), block)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.params["dim"]), np.float32)

    def embed_text(self, x: np.ndarray) -> np.ndarray:
        """Text features [n, d_text] -> joint embeddings [n, dim], L2-normalised."""
        self._check_fitted()
        assert self.model is not None
        return self._embed(self.model.text, _check_matrix(x, "text features", self.model.text.linear.in_features))

    def embed_image(self, x: np.ndarray) -> np.ndarray:
        """Image features [n, d_image] -> joint embeddings [n, dim], L2-normalised."""
        self._check_fitted()
        assert self.model is not None
        return self._embed(self.model.image, _check_matrix(x, "image features", self.model.image.linear.in_features))

    def save(self, path: str | Path) -> Path:
        """A folder with `aligner.json` (settings, input sizes, training report) and `state.pt`."""
        self._check_fitted()
        assert self.model is not None
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), path / "state.pt")
        info = {
            "model": "contrastive-aligner",
            "params": self.params,
            "text_dim": self.model.text.linear.in_features,
            "image_dim": self.model.image.linear.in_features,
            "n_classes": self.model.classes.out_features if self.model.classes is not None else 0,
            "vitrina_version": __version__,
            "report": dataclasses.asdict(self.report),
        }
        (path / "aligner.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ContrastiveAligner:
        path = Path(path)
        info = json.loads((path / "aligner.json").read_text(encoding="utf-8"))
        if info.get("model") != "contrastive-aligner":
            raise ValueError(f"{path} does not hold a saved ContrastiveAligner")
        aligner = cls(**info["params"])
        aligner.model = _Model(info["text_dim"], info["image_dim"], info["n_classes"], aligner.params)
        aligner.model.load_state_dict(torch.load(path / "state.pt", weights_only=True))
        aligner.report = AlignReport(**info["report"])
        return aligner

    def _check_fitted(self) -> None:
        if self.model is None:
            raise RuntimeError("ContrastiveAligner: call fit() or load() first")
