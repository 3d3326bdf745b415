"""Product recognition: which category a product photo shows, from frozen image features.

`ProductRecognizer` is a small classification head (a linear probe, or an MLP with dropout) over
an `[n, d]` image feature array; it never reads files. Several looks at one photo (a centre crop,
the whole photo, its top and bottom) go side by side in `d` (`vitrina.analytics.photo_views`).

`product_split` holds whole products out: every item of one product (e.g. all colour variants of
one H&M `product_code`) lands in the same fold, so held-out items are unseen products.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitrina.data.splits import TEST, TRAIN, VALID, SplitError

__all__ = ["ProductRecognizer", "product_split", "rare_classes"]

_FORMAT = 1  # bump when the saved layout changes


def rare_classes(labels: Sequence[Any], groups: Sequence[Any], min_groups: int) -> set[str]:
    """Labels carried by fewer than `min_groups` distinct groups (products): too few to hold any out."""
    products: dict[str, set[str]] = {}
    for label, group in zip(labels, groups, strict=True):
        products.setdefault(str(label), set()).add(str(group))
    return {label for label, seen in products.items() if len(seen) < min_groups}


def product_split(
    labels: Sequence[Any], groups: Sequence[Any], ratios: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> np.ndarray:
    """Fold per item (TRAIN, VALID, TEST) with whole groups held out, stratified by label.

    A group's label is its items' most common one (ties: the smallest). Within each label the groups
    are shuffled (seeded) and cut at the cumulative ratios, rounded, so every label with enough
    groups appears in each fold in proportion.
    """
    if len(labels) != len(groups):
        raise SplitError(f"{len(labels)} labels but {len(groups)} groups")
    if len(ratios) != 3 or min(ratios) < 0 or not np.isclose(sum(ratios), 1.0):
        raise SplitError(f"ratios must be three non-negative shares summing to 1, got {list(ratios)}")
    per_group: dict[str, Counter[str]] = {}
    for label, group in zip(labels, groups, strict=True):
        per_group.setdefault(str(group), Counter())[str(label)] += 1
    by_label: dict[str, list[str]] = {}
    for group in sorted(per_group):
        top = max(per_group[group].values())
        label = min(lab for lab, c in per_group[group].items() if c == top)
        by_label.setdefault(label, []).append(group)
    rng = np.random.default_rng(seed)
    group_fold: dict[str, int] = {}
    cut_train, cut_valid = ratios[0], ratios[0] + ratios[1]
    for label in sorted(by_label):
        members = by_label[label]
        order = rng.permutation(len(members))
        n = len(members)
        a, b = int(np.floor(n * cut_train + 0.5)), int(np.floor(n * cut_valid + 0.5))
        for rank, j in enumerate(order):
            group_fold[members[j]] = TRAIN if rank < a else VALID if rank < b else TEST
    return np.array([group_fold[str(g)] for g in groups], dtype=np.int8)


def _as_matrix(x: np.ndarray, what: str) -> np.ndarray:
    """[n, d] features as float32, checked."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"{what} must be an [n, d] feature array, got shape {list(x.shape)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return x


class ProductRecognizer:
    """Classifier head on frozen image features, trained with AdamW and a cosine learning rate.

    `hidden=0` is a linear probe (multinomial logistic regression); otherwise one hidden ReLU layer.
    `dropout` applies to the (standardised) input and the hidden layer; `class_weight` is the power
    of inverse class frequency in the loss (0 none, 0.5 square root, 1 balanced); `label_smoothing`
    is cross-entropy's. With validation data the epoch with the best validation accuracy is kept and
    training stops `patience` epochs after it.
    """

    def __init__(
        self,
        hidden: int = 512,
        dropout: float = 0.6,
        epochs: int = 60,
        lr: float = 3e-4,
        weight_decay: float = 1e-4,
        label_smoothing: float = 0.1,
        class_weight: float = 0.0,
        standardize: bool = True,
        batch_size: int = 256,
        patience: int = 10,
        seed: int = 0,
    ) -> None:
        if hidden < 0 or epochs < 1 or batch_size < 1 or patience < 1:
            raise ValueError("hidden must be >= 0 and epochs, batch_size, patience >= 1")
        if not 0.0 <= dropout < 1.0 or not 0.0 <= label_smoothing < 1.0:
            raise ValueError("dropout and label_smoothing must be in [0, 1)")
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.standardize = standardize
        self.batch_size = batch_size
        self.patience = patience
        self.seed = seed
        self.classes_: np.ndarray = np.array([], dtype=object)
        self.dim_ = 0
        self.best_epoch_ = 0
        self.history_: list[float] = []  # validation accuracy per epoch (empty without validation)
        self._mean = np.zeros(0, dtype=np.float32)
        self._scale = np.ones(0, dtype=np.float32)
        self._net: torch.nn.Module | None = None

    def params(self) -> dict[str, Any]:
        """The constructor's settings (what `save` writes and a benchmark reports)."""
        keys = ("hidden", "dropout", "epochs", "lr", "weight_decay", "label_smoothing", "class_weight")
        keys += ("standardize", "batch_size", "patience", "seed")
        return {k: getattr(self, k) for k in keys}

    def _build(self, n_classes: int) -> torch.nn.Module:
        layers: list[torch.nn.Module] = [torch.nn.Dropout(self.dropout)]
        if self.hidden:
            layers += [torch.nn.Linear(self.dim_, self.hidden), torch.nn.ReLU(), torch.nn.Dropout(self.dropout)]
        layers.append(torch.nn.Linear(self.hidden or self.dim_, n_classes))
        return torch.nn.Sequential(*layers)

    def _scaled(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((x - self._mean) / self._scale)

    def fit(
        self,
        X: np.ndarray,
        labels: Sequence[Any],
        X_valid: np.ndarray | None = None,
        y_valid: Sequence[Any] | None = None,
    ) -> ProductRecognizer:
        x = _as_matrix(X, "X")
        if len(x) != len(labels):
            raise ValueError(f"X has {len(x)} rows but labels has {len(labels)}")
        if (X_valid is None) != (y_valid is None):
            raise ValueError("give both X_valid and y_valid, or neither")
        names = np.array([str(v) for v in labels], dtype=object)
        self.classes_ = np.array(sorted(set(names.tolist())), dtype=object)
        if len(self.classes_) < 2:
            raise ValueError(f"need at least two classes to learn, got {list(self.classes_)}")
        index = {c: i for i, c in enumerate(self.classes_)}
        y = torch.from_numpy(np.array([index[v] for v in names], dtype=np.int64))
        self.dim_ = x.shape[1]
        if self.standardize:
            self._mean = x.mean(0)
            self._scale = np.maximum(x.std(0), 1e-6).astype(np.float32)
        else:
            self._mean = np.zeros(self.dim_, dtype=np.float32)
            self._scale = np.ones(self.dim_, dtype=np.float32)
        xs = self._scaled(x)
        valid: tuple[np.ndarray, np.ndarray] | None = None
        if X_valid is not None and y_valid is not None:
            xv = _as_matrix(X_valid, "X_valid")
            if xv.shape != (len(y_valid), self.dim_):
                raise ValueError(f"X_valid must be [{len(y_valid)}, {self.dim_}], got {list(xv.shape)}")
            valid = (xv, np.array([index.get(str(t), -1) for t in y_valid]))
        counts = np.bincount(y.numpy(), minlength=len(self.classes_)).astype(np.float64)
        weights = (counts.sum() / (len(counts) * counts)) ** self.class_weight
        loss_fn = torch.nn.CrossEntropyLoss(
            weight=torch.tensor(weights / weights.mean(), dtype=torch.float32), label_smoothing=self.label_smoothing
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = self._build(len(self.classes_))
            self._net = net
            opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            steps = self.epochs * -(-len(xs) // self.batch_size)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, self.lr, total_steps=steps, pct_start=0.1)
            best, best_state, self.history_, self.best_epoch_ = -1.0, None, [], self.epochs
            for epoch in range(1, self.epochs + 1):
                net.train()
                for batch in torch.randperm(len(xs)).split(self.batch_size):
                    opt.zero_grad()
                    loss_fn(net(xs[batch]), y[batch]).backward()
                    opt.step()
                    sched.step()
                if valid is None:
                    continue
                acc = float((self.predict_proba(valid[0]).argmax(1) == valid[1]).mean())
                self.history_.append(acc)
                if acc > best:
                    best, self.best_epoch_ = acc, epoch
                    best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
                elif epoch - self.best_epoch_ >= self.patience:
                    break
            if best_state is not None:
                net.load_state_dict(best_state)
        net.eval()
        return self

    def _check(self, X: np.ndarray) -> np.ndarray:
        if self._net is None:
            raise RuntimeError("the recognizer is not fitted; call fit() or load() first")
        x = _as_matrix(X, "X")
        if x.shape[1] != self.dim_:
            raise ValueError(f"X has {x.shape[1]} features per row, the recognizer was fitted on {self.dim_}")
        return x

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """[n, n_classes] class probabilities (columns in `classes_` order)."""
        x = self._check(X)
        assert self._net is not None
        was_training = self._net.training
        self._net.eval()
        with torch.inference_mode():
            out = [self._net(self._scaled(x[i : i + 8192])).softmax(1) for i in range(0, len(x), 8192)]
        self._net.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.classes_)), dtype=np.float32)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class per row."""
        return self.classes_[self.predict_proba(X).argmax(1)]

    def top_k(self, X: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        """The k most probable (class, probability) pairs per row, most probable first."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        proba = self.predict_proba(X)
        top = np.argsort(-proba, axis=1, kind="stable")[:, :k]
        return [[(str(self.classes_[j]), float(row[j])) for j in cols] for row, cols in zip(proba, top, strict=True)]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """One `.npz`: settings and classes as JSON, standardisation and weights as arrays (no pickle)."""
        if self._net is None:
            raise RuntimeError("the recognizer is not fitted; nothing to save")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": _FORMAT,
            "params": self.params(),
            "classes": [str(c) for c in self.classes_],
            "dim": self.dim_,
            "best_epoch": self.best_epoch_,
            "history": self.history_,
        }
        weights = {f"net.{k}": t.detach().numpy() for k, t in self._net.state_dict().items()}
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, meta=json.dumps(meta), mean=self._mean, scale=self._scale, **weights)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ProductRecognizer:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path}: saved recognizer format {meta.get('format')}, expected {_FORMAT}")
            model = cls(**meta["params"])
            model.classes_ = np.array(meta["classes"], dtype=object)
            model.dim_ = int(meta["dim"])
            model.best_epoch_ = int(meta["best_epoch"])
            model.history_ = [float(a) for a in meta["history"]]
            model._mean, model._scale = z["mean"], z["scale"]
            state = {k[len("net.") :]: torch.from_numpy(z[k].copy()) for k in z.files if k.startswith("net.")}
        model._net = model._build(len(model.classes_))
        model._net.load_state_dict(state)
        model._net.eval()
        return model
