"""Full-ranking evaluation: score every item for every user, mask only the user's training items.

This is the MMRec protocol: users with no target items are excluded; Recall and NDCG are averaged
over the remaining users. Scoring is batched (one matmul + topk per batch of users) so the whole
catalogue is ranked for tens of thousands of users in about a second on two cores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from vitrina.evaluation.kernels import auc_per_positive
from vitrina.evaluation.metrics import RANKING_METRICS

Scorer = Callable[[np.ndarray], "torch.Tensor | np.ndarray"]


def block_coordinates(m: sp.csr_matrix, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(row-in-block, column) of every stored entry of the given CSR rows."""
    block = m[rows]
    row_of = np.repeat(np.arange(len(rows)), np.diff(block.indptr))
    return torch.from_numpy(row_of), torch.from_numpy(block.indices.astype(np.int64))


class Evaluator:
    """Evaluates a scorer against one target fold (valid or test).

    `scorer(user_indices) -> [len(users), n_items]` scores, as a new tensor or array that the
    evaluator may overwrite (training items are masked in place). `item_vectors`, when given, enables
    intra-list diversity; novelty uses training popularity. `candidates`, when given, restricts the
    ranking to those item indices (the cold-item protocol ranks only the held-out items).
    """

    def __init__(
        self,
        train: sp.csr_matrix,
        target: sp.csr_matrix,
        ks: Sequence[int] = (5, 10, 20, 50),
        batch_users: int = 4096,
        item_vectors: np.ndarray | None = None,
        candidates: np.ndarray | None = None,
    ) -> None:
        if train.shape != target.shape:
            raise ValueError(f"train {train.shape} and target {target.shape} differ in shape")
        # Stored zeros are not interactions: drop them so masks and targets see real entries only.
        self.train, self.target = train.tocsr(copy=True), target.tocsr(copy=True)
        self.train.eliminate_zeros()
        self.target.eliminate_zeros()
        self.ks = tuple(sorted(set(int(k) for k in ks)))
        self.batch_users = batch_users
        self.users = np.flatnonzero(np.diff(self.target.indptr) > 0)
        self.n_items = train.shape[1]
        pop = np.asarray(self.train.sum(axis=0)).ravel()
        # Self-information of an item under training popularity, smoothed so unseen items are finite.
        self.self_info = torch.from_numpy(-np.log2((pop + 1.0) / (train.shape[0] + 1.0))).float()
        self.excluded: torch.Tensor | None = None
        if candidates is not None:
            keep = np.zeros(self.n_items, dtype=bool)
            keep[np.asarray(candidates, dtype=np.int64)] = True
            self.excluded = torch.from_numpy(~keep)
        self.item_vectors = None
        if item_vectors is not None:
            v = torch.from_numpy(np.asarray(item_vectors, dtype=np.float32))
            self.item_vectors = torch.nn.functional.normalize(v, dim=1)

    def evaluate(self, scorer: Scorer, ks: Sequence[int] | None = None, full: bool = True) -> dict[str, float]:
        """Metrics averaged over users with targets. `full=False` gives only ranking metrics (fast)."""
        ks = tuple(sorted(set(ks))) if ks else self.ks
        k_max = min(max(ks), self.n_items)
        sums: dict[str, float] = {}
        auc_sum = 0.0
        recommended = torch.zeros((len(ks), self.n_items), dtype=torch.bool)
        beyond: dict[str, float] = {}
        n_users = len(self.users)
        for start in range(0, n_users, self.batch_users):
            rows = self.users[start : start + self.batch_users]
            scores = torch.as_tensor(scorer(rows), dtype=torch.float32).contiguous()
            seen_coords = block_coordinates(self.train, rows)
            scores[seen_coords] = -torch.inf
            if self.excluded is not None:
                scores[:, self.excluded] = -torch.inf
            top_scores, top_items = torch.topk(scores, k_max, dim=1)
            # Hits by key lookup (row * n_items + item) instead of a dense positives matrix.
            t_rows, t_cols = block_coordinates(self.target, rows)
            target_keys = t_rows * self.n_items + t_cols
            top_keys = torch.arange(len(rows)).unsqueeze(1) * self.n_items + top_items
            # A masked (-inf) item filling a short list is never a hit.
            finite = torch.isfinite(top_scores)
            hits = (torch.isin(top_keys, target_keys) & finite).float()
            n_pos = torch.from_numpy(np.diff(self.target.indptr)[rows].astype(np.float32))
            for name, fn in RANKING_METRICS.items():
                for k in ks:
                    key = f"{name}@{k}"
                    sums[key] = sums.get(key, 0.0) + float(fn(hits, n_pos, k).sum())
            if full:
                positives = torch.zeros_like(scores, dtype=torch.bool)
                positives[t_rows, t_cols] = True
                seen = torch.zeros_like(positives)
                seen[seen_coords] = True
                if self.excluded is not None:
                    seen[:, self.excluded] = True  # not candidates: neither positives nor negatives
                auc_sum += float(self._auc(scores, positives, seen, n_pos).sum())
                self._beyond_accuracy(top_items, finite, ks, recommended, beyond)
        out = {key: value / max(1, n_users) for key, value in sums.items()}
        if full:
            out["auc"] = auc_sum / max(1, n_users)
            for j, k in enumerate(ks):
                out[f"coverage@{k}"] = float(recommended[j].sum()) / self.n_items
                out[f"novelty@{k}"] = beyond[f"novelty@{k}"] / max(1, n_users)
                if self.item_vectors is not None:
                    out[f"diversity@{k}"] = beyond[f"diversity@{k}"] / max(1, n_users)
        out["users"] = float(n_users)
        return out

    @staticmethod
    def _auc(scores: torch.Tensor, positives: torch.Tensor, seen: torch.Tensor, n_pos: torch.Tensor) -> torch.Tensor:
        """Per-user AUC over all unseen items: the share of (positive, negative) pairs ordered right."""
        negatives = ~(positives | seen)
        rows, cols = torch.nonzero(positives, as_tuple=True)
        per_pos = auc_per_positive(scores.numpy(), negatives.numpy(), rows.numpy(), cols.numpy())
        per_user = torch.zeros(scores.shape[0], dtype=torch.float64).index_add_(0, rows, torch.from_numpy(per_pos))
        return per_user / n_pos.clamp(min=1)

    def _beyond_accuracy(
        self,
        top_items: torch.Tensor,
        valid: torch.Tensor,
        ks: Sequence[int],
        recommended: torch.Tensor,
        acc: dict[str, float],
    ) -> None:
        """Coverage, novelty and (with item vectors) intra-list diversity of each top-k list."""
        gram = None
        if self.item_vectors is not None:
            v = self.item_vectors[top_items] * valid.unsqueeze(2)
            gram = torch.bmm(v, v.transpose(1, 2))
        info = self.self_info[top_items] * valid
        for j, k in enumerate(ks):
            ok = valid[:, :k]
            recommended[j, top_items[:, :k][ok]] = True
            n = ok.sum(1).float()
            acc[f"novelty@{k}"] = acc.get(f"novelty@{k}", 0.0) + float((info[:, :k].sum(1) / n.clamp(min=1)).sum())
            if gram is not None:
                sim = gram[:, :k, :k].sum((1, 2)) - n
                div = torch.where(n > 1, 1.0 - sim / (n * (n - 1)).clamp(min=1), torch.zeros_like(n))
                acc[f"diversity@{k}"] = acc.get(f"diversity@{k}", 0.0) + float(div.sum())
