"""BPR trained with DP-SGD (Abadi et al., 2016) through opacus: (ε, δ)-differential privacy for
each training interaction.

Every step clips each interaction's gradient to `max_grad_norm` and adds Gaussian noise calibrated so
that the whole planned training (`epochs` passes with Poisson-sampled batches of expected size
`batch_size`) spends at most `epsilon` at `delta` (opacus' PRV accountant). The guarantee covers the
released parameters whatever epoch early stopping keeps, because the budget is set for all planned
epochs. The unit is one interaction (record-level DP), not a whole shopper: a shopper with many
interactions is protected per interaction. `epsilon = 0` means no privacy (plain BPR through the same
code path, for the ε = ∞ point of a utility curve).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from vitrina.data.snapshot import Snapshot
from vitrina.models.base import Recommender, register
from vitrina.models.bpr import xavier_rows
from vitrina.models.sampling import PairSampler


class _MF(nn.Module):
    """Score s(u, i) = user · item + item bias. Under DP the bias matters most: one number per item
    that every interaction with it moves, so its signal stands far above the noise (it learns
    popularity) long before the 64 coordinates of a rarely seen item's vector do."""

    def __init__(self, n_users: int, n_items: int, dim: int, gen: torch.Generator) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        self.bias = nn.Embedding(n_items, 1)
        with torch.no_grad():
            self.user.weight.copy_(xavier_rows(n_users, dim, gen))
            self.item.weight.copy_(xavier_rows(n_items, dim, gen))
            self.bias.weight.zero_()

    def forward(self, triples: torch.Tensor) -> torch.Tensor:
        """Score margins s(u, i) - s(u, j) for [batch, 3] (user, positive, negative). Each table is
        looked up once per batch, the items as [batch, 2]: ghost clipping then sums each interaction's
        gradient over the rows it touched (its positive and its negative differ, so the rows do)."""
        u = self.user(triples[:, 0])
        pair = triples[:, 1:3].contiguous()
        vectors, bias = self.item(pair), self.bias(pair).squeeze(-1)
        return (u * (vectors[:, 0] - vectors[:, 1])).sum(1) + bias[:, 0] - bias[:, 1]


class _BPRLoss(nn.Module):
    """-log σ(margin), with the `reduction` switch opacus' ghost clipping flips to get per-sample losses."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, margins: torch.Tensor) -> torch.Tensor:
        loss = -F.logsigmoid(margins)
        if self.reduction == "mean":
            return loss.mean()
        return loss.sum() if self.reduction == "sum" else loss


@register
class DPBPR(Recommender):
    name = "dpbpr"
    user_rows = ("user",)
    iterative = True

    def __init__(
        self,
        epsilon: float = 8.0,
        delta: float = 1e-5,
        max_grad_norm: float = 0.03,
        epochs: int = 30,
        embedding_dim: int = 64,
        learning_rate: float = 0.1,
        batch_size: int = 4096,
        optimizer: str = "sgd",
        seed: int = 0,
    ) -> None:
        super().__init__(
            seed=seed,
            epsilon=epsilon,
            delta=delta,
            max_grad_norm=max_grad_norm,
            epochs=epochs,
            embedding_dim=embedding_dim,
            learning_rate=learning_rate,
            batch_size=batch_size,
            optimizer=optimizer,
        )
        if epsilon < 0 or not 0 < delta < 1 or max_grad_norm <= 0 or epochs < 1:
            raise ValueError("dpbpr needs epsilon >= 0 (0: no privacy), 0 < delta < 1, max_grad_norm > 0, epochs >= 1")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"dpbpr optimizer must be adam or sgd, got {optimizer!r}")
        self.optimizer_name = optimizer
        # Adam steps every coordinate by about the learning rate whatever its gradient, so under DP
        # the rows no interaction of the batch touched take noise-sized steps; SGD runs on the summed
        # loss (its learning rate is a per-interaction step), which scales noise and signal alike.
        self.reduction = "mean" if optimizer == "adam" else "sum"
        self.epsilon, self.delta, self.clip, self.epochs = (
            float(epsilon),
            float(delta),
            float(max_grad_norm),
            int(epochs),
        )
        self.dim, self.lr, self.batch_size = int(embedding_dim), float(learning_rate), int(batch_size)
        self.epoch_limit = self.epochs  # the privacy budget covers `epochs` passes, no more

    def _init_training(self, data: Snapshot) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        self.net = _MF(data.n_users, data.n_items, self.dim, gen)
        self.sampler = PairSampler(data.train, self.batch_size, self.seed)
        pairs = TensorDataset(torch.from_numpy(self.sampler.users), torch.from_numpy(self.sampler.items))
        loader = DataLoader(pairs, batch_size=self.batch_size, shuffle=True, generator=gen)
        optimizer = (
            torch.optim.Adam(self.net.parameters(), lr=self.lr)
            if self.optimizer_name == "adam"
            else torch.optim.SGD(self.net.parameters(), lr=self.lr)
        )
        self.engine = None
        self.criterion: nn.Module | Any = _BPRLoss(self.reduction)
        if self.epsilon > 0:
            from opacus import PrivacyEngine

            self.engine = PrivacyEngine(accountant="prv")
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
                # Ghost clipping: per-interaction gradient norms without materialising per-sample
                # gradients, which for an embedding table are batch × rows × dim (gigabytes here).
                self.model, optimizer, self.criterion, loader = self.engine.make_private_with_epsilon(
                    module=self.net,
                    optimizer=optimizer,
                    criterion=self.criterion,
                    data_loader=loader,
                    target_epsilon=self.epsilon,
                    target_delta=self.delta,
                    epochs=self.epochs,
                    max_grad_norm=self.clip,
                    grad_sample_mode="ghost",
                    loss_reduction=self.reduction,
                )
        else:
            self.model = self.net
        self.optimizer, self.loader = optimizer, loader

    def _train_epoch(self, epoch: int) -> float:
        total, n = 0.0, 0
        self.model.train()
        for users, items in self.loader:
            if len(users) == 0:  # Poisson sampling can draw an empty batch
                continue
            negatives = torch.from_numpy(self.sampler.negatives(users.numpy()))
            loss = self.criterion(self.model(torch.stack([users, items, negatives], dim=1)))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.item()) * (len(users) if self.reduction == "mean" else 1)
            n += len(users)
        return total / max(n, 1)

    def _epoch_figures(self) -> dict[str, float]:
        """The privacy spent by every step so far (what the released weights cost, whichever epoch
        early stopping keeps)."""
        return {"epsilon_spent": float(self.engine.get_epsilon(self.delta))} if self.engine is not None else {}

    @property
    def spent(self) -> float | None:
        """ε spent by the training (the saved report keeps it); None without privacy."""
        history = self.report.history
        return history[-1].get("epsilon_spent") if history else None

    def _score(self, users: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            net = self.net
            return net.user.weight[torch.from_numpy(users)] @ net.item.weight.T + net.bias.weight.T

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """[user, 1] and [item, bias]: their dot product is the score."""
        self._check_fitted()
        users, items, bias = (
            t.detach().numpy() for t in (self.net.user.weight, self.net.item.weight, self.net.bias.weight)
        )
        return np.hstack([users, np.ones((len(users), 1), users.dtype)]), np.hstack([items, bias])

    def _state(self) -> dict[str, np.ndarray]:
        return {name: getattr(self.net, name).weight.detach().numpy().copy() for name in ("user", "item", "bias")}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        if not hasattr(self, "net"):
            n_users, dim = state["user"].shape
            self.net = _MF(n_users, len(state["item"]), dim, torch.Generator().manual_seed(0))
        with torch.no_grad():
            for name in ("user", "item", "bias"):
                getattr(self.net, name).weight.copy_(torch.from_numpy(state[name]))
