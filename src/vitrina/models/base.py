"""The Recommender interface every model implements, and the registry that finds models by name.

fit(snapshot) -> score(users, items) -> recommend(user_id, k) -> save(dir) / load(dir).
Iterative models train epoch by epoch with early stopping on validation (the watched metric,
Recall@20 by default) and keep the parameters of their best validation epoch.
"""

from __future__ import annotations

import copy
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from vitrina import __version__
from vitrina.data.idmap import IdMap
from vitrina.data.snapshot import Snapshot
from vitrina.evaluation.evaluator import Evaluator
from vitrina.registry import Registry

REGISTRY: Registry[Recommender] = Registry("model")


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make a model available by its `name`."""
    return REGISTRY.register(cls)


def create(name: str, **params: Any) -> Recommender:
    return REGISTRY.create(name, **params)


@dataclass
class FitReport:
    """What training did: epochs run, the best one, its validation metrics and the curve."""

    epochs: int = 0
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0


@dataclass
class EarlyStopping:
    """Patience counted in epochs (or rounds) since the best validation figure; a check every
    `every` of them adds `every`. What `Recommender.fit` and the federated trainer both stop on."""

    patience: int
    every: int = 1
    best: float = -np.inf
    waited: int = 0

    def improved(self, value: float) -> bool:
        """Record a validation figure; True when it is the best so far."""
        if value > self.best:
            self.best, self.waited = value, 0
            return True
        self.waited += self.every
        return False

    @property
    def done(self) -> bool:
        return self.waited >= self.patience


class Recommender(ABC):
    """Base class. Subclasses set `name`, implement `_fit` or the epoch hooks, and `_score`."""

    name: ClassVar[str] = ""
    # Iterative models implement _init_training and _train_epoch; the base runs early stopping.
    iterative: ClassVar[bool] = False
    # State arrays whose rows are users: what `forget_saved` removes (with the id and the seen row).
    user_rows: ClassVar[tuple[str, ...]] = ()
    # Most epochs this model may train, whatever `fit` is given (DP-SGD: its privacy budget covers a
    # planned number of passes). None: no cap of its own.
    epoch_limit: int | None = None

    def __init__(self, seed: int = 0, **params: Any) -> None:
        self.seed = int(seed)
        self.params = params
        self.users: IdMap | None = None
        self.items: IdMap | None = None
        self.seen: sp.csr_matrix | None = None
        self.report = FitReport()

    # --- hooks for subclasses -------------------------------------------------------------
    def _fit(self, data: Snapshot) -> None:
        """One-shot training (non-iterative models)."""
        raise NotImplementedError

    def _init_training(self, data: Snapshot) -> None:
        """Allocate parameters and optimisers (iterative models)."""
        raise NotImplementedError

    def _train_epoch(self, epoch: int) -> float | None:
        """One pass over the training data; returns the mean loss (None when not computed)."""
        raise NotImplementedError

    def _epoch_figures(self) -> dict[str, float]:
        """Figures of the training so far that go into each epoch's history row (and so into the
        saved report), beside the loss and the validation metrics."""
        return {}

    @abstractmethod
    def _score(self, users: np.ndarray) -> torch.Tensor:
        """Scores of all items for the given dense user indices: [len(users), n_items]."""

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """Learned parameters as numpy arrays (what save writes and early stopping keeps)."""

    @abstractmethod
    def _load_state(self, state: dict[str, np.ndarray]) -> None: ...

    # --- public API -------------------------------------------------------------------------
    def fit(
        self,
        data: Snapshot,
        valid: Evaluator | None = None,
        patience: int = 20,
        max_epochs: int = 1000,
        eval_every: int = 1,
        watch: str = "recall@20",
        progress: bool = True,
        on_epoch: Callable[[dict[str, float]], None] | None = None,
    ) -> Recommender:
        """Train on `data.train`; with `valid`, stop early and keep the best validation epoch.
        `on_epoch` sees each epoch's history row (a distributed trainer reports it)."""
        self._begin(data)
        start = time.perf_counter()
        if not self.iterative:
            self._fit(data)
            self.report = FitReport(epochs=1, best_epoch=1)
            if valid is not None:
                self.report.best_valid = valid.evaluate(self._score_np, full=False)
            self.report.train_seconds = time.perf_counter() - start
            return self
        self._init_training(data)
        report = FitReport()
        best_state: dict[str, np.ndarray] | None = None
        stopping = EarlyStopping(patience, eval_every)
        limit = min(max_epochs, self.epoch_limit or max_epochs)
        bar = tqdm(range(1, limit + 1), desc=f"{self.name}", disable=not progress, leave=False)
        for epoch in bar:
            t0 = time.perf_counter()
            loss = self._train_epoch(epoch)
            row: dict[str, float] = {"epoch": epoch, "seconds": time.perf_counter() - t0, **self._epoch_figures()}
            if loss is not None:
                if not np.isfinite(loss):
                    raise FloatingPointError(f"{self.name}: loss became {loss} at epoch {epoch}")
                row["loss"] = loss
            report.epochs = epoch
            if valid is not None and epoch % eval_every == 0:
                metrics = valid.evaluate(self._score_np, full=False)
                row.update({f"valid_{k}": v for k, v in metrics.items() if k != "users"})
                value = metrics[watch]
                if stopping.improved(value):
                    best_state = copy.deepcopy(self._state())
                    report.best_epoch, report.best_valid = epoch, metrics
                bar.set_postfix({watch: f"{value:.4f}", "best": report.best_epoch})
            report.history.append(row)
            if on_epoch is not None:
                on_epoch(row)
            if valid is not None and stopping.done:
                break
        if best_state is not None:
            self._load_state(best_state)
        else:
            report.best_epoch = report.epochs
        report.train_seconds = time.perf_counter() - start
        self.report = report
        return self

    def train_epochs(
        self, data: Snapshot, epochs: int, start: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], float]:
        """Train `epochs` epochs on `data` from the given parameters (the rest freshly initialised;
        a fresh optimiser, no validation) and return (parameters, last epoch's loss): one round of a
        federated client, whose starting point comes from the server and its own last round."""
        if not self.iterative:
            raise TypeError(f"{self.name}: not trained in epochs")
        self._begin(data)
        self._init_training(data)
        self._load_state({**self._state(), **start})
        loss: float | None = None
        for epoch in range(1, epochs + 1):
            loss = self._train_epoch(epoch)
        return self._state(), float("nan") if loss is None else float(loss)

    def _begin(self, data: Snapshot) -> None:
        """Seed torch and take the snapshot's id maps and seen items: how every training starts."""
        torch.manual_seed(self.seed)
        self.users, self.items, self.seen = data.users, data.items, data.train

    def _score_np(self, users: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self._score(np.asarray(users, dtype=np.int64))

    def score(self, users: np.ndarray | list[int], items: np.ndarray | list[int] | None = None) -> np.ndarray:
        """Scores for dense user indices, for all items or the given dense item indices."""
        self._check_fitted()
        scores = self._score_np(np.atleast_1d(np.asarray(users, dtype=np.int64)))
        if items is not None:
            scores = scores[:, torch.as_tensor(np.asarray(items, dtype=np.int64))]
        return scores.numpy()

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """User and item vectors whose dot products are this model's scores: what serving blends
        with a user's most recent items without retraining."""
        raise TypeError(f"{self.name}: its scores are not dot products of user and item vectors")

    def recommend(self, user_id: str, k: int = 10, exclude_seen: bool = True) -> list[tuple[str, float]]:
        """Top-k (item id, score) for a user given by the shop's id."""
        self._check_fitted()
        assert self.users is not None and self.items is not None and self.seen is not None
        u = self.users.index(user_id)
        scores = self._score_np(np.array([u]))[0].clone()
        if exclude_seen:
            seen = self.seen.indices[self.seen.indptr[u] : self.seen.indptr[u + 1]]
            scores[torch.as_tensor(seen, dtype=torch.long)] = -torch.inf
        k = min(k, len(scores))
        top = torch.topk(scores, k)
        keep = torch.isfinite(top.values)
        ids = self.items.to_ids(top.indices[keep].numpy())
        return list(zip(ids.tolist(), top.values[keep].tolist(), strict=True))

    def save(self, path: str | Path) -> Path:
        """A folder with the parameters, the id maps, the seen items and what training reported."""
        self._check_fitted()
        assert self.users is not None and self.items is not None and self.seen is not None
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.savez(path / "state.npz", **self._state())
        np.savez(
            path / "ids.npz",
            users=self.users.ids.astype(str),
            items=self.items.ids.astype(str),
            seen_indptr=self.seen.indptr,
            seen_indices=self.seen.indices,
        )
        info = {
            "model": self.name,
            "seed": self.seed,
            "params": self.params,
            "vitrina_version": __version__,
            "report": asdict(self.report),
        }
        (path / "model.json").write_text(json.dumps(info, indent=2, default=float))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load any saved model; the class comes from the registry, not from the caller."""
        path = Path(path)
        info = json.loads((path / "model.json").read_text())
        model = create(info["model"], seed=info["seed"], **info["params"])
        if cls is not Recommender and not isinstance(model, cls):
            raise TypeError(f"{path} holds a '{info['model']}' model, not {cls.__name__}")
        with np.load(path / "ids.npz", allow_pickle=False) as z:
            model.users, model.items = IdMap(z["users"], "user"), IdMap(z["items"], "item")
            shape = (len(model.users), len(model.items))
            data = np.ones(len(z["seen_indices"]), dtype=np.float32)
            model.seen = sp.csr_matrix((data, z["seen_indices"], z["seen_indptr"]), shape=shape)
        with np.load(path / "state.npz", allow_pickle=False) as z:
            model._load_state({k: z[k] for k in z.files})
        model.report = FitReport(**info["report"])
        return model

    def _forget_state(self, state: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
        """The state without the users `keep` is False for (models holding users elsewhere override)."""
        return {k: v[keep] if k in self.user_rows else v for k, v in state.items()}

    @staticmethod
    def forget_saved(path: str | Path, user_ids: list[str]) -> int:
        """Remove shoppers from a saved model, in place: their ids, seen rows and per-user state (an
        erasure request). Each file is replaced atomically; returns how many of them the model had."""
        path = Path(path)
        info = json.loads((path / "model.json").read_text())
        model = create(info["model"], seed=info["seed"], **info["params"])
        with np.load(path / "ids.npz", allow_pickle=False) as z:
            ids = {k: z[k] for k in z.files}
        keep = ~np.isin(ids["users"].astype(str), np.asarray(user_ids, dtype=str))
        if keep.all():
            return 0
        seen = sp.csr_matrix(
            (np.ones(len(ids["seen_indices"]), np.float32), ids["seen_indices"], ids["seen_indptr"]),
            shape=(len(keep), len(ids["items"])),
        )[keep]
        with np.load(path / "state.npz", allow_pickle=False) as z:
            state = model._forget_state({k: z[k] for k in z.files}, keep)
        ids |= {"users": ids["users"][keep], "seen_indptr": seen.indptr, "seen_indices": seen.indices}
        for name, arrays in (("state.npz", state), ("ids.npz", ids)):
            tmp = path / f".{name}.tmp.npz"
            np.savez(tmp, **arrays)
            tmp.replace(path / name)
        return int((~keep).sum())

    def _check_fitted(self) -> None:
        if self.users is None:
            raise RuntimeError(f"{self.name}: call fit() or load() first")

    def _add_seen(self, events: sp.csr_matrix) -> None:
        """Fold new (user, item) events (a users × items matrix) into what each user has seen, so
        `recommend` excludes them and a saved model keeps them (models with `observe` call this)."""
        self._check_fitted()
        assert self.seen is not None
        if events.shape != self.seen.shape:
            raise ValueError(f"{self.name}: events are {events.shape}, the model knows {self.seen.shape}")
        self.seen = ((self.seen + events) > 0).astype(np.float32).tocsr()
