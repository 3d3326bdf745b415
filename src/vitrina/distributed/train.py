"""Data-parallel training on Ray Train: TorchTrainer, a gloo process group, the single-process result.

Every worker builds the same model from the same seed, draws the same batches, and trains on its
slice of each one; before every optimiser step the gradients, each weighted by its slice's share of
the batch, are summed over the gloo group (`BPR.shard`), so all workers take exactly the update a
single process would (up to the order of floating-point sums). Validation runs on every worker, so
early stopping decides the same everywhere; every epoch's figures go to Ray Train, and the best
model comes back as the run's checkpoint, a saved model folder that `Recommender.load` reads.
Models with this data parallelism: the BPR family (bpr, lightgcn, freedom, vbpr, lgmrec); identical
results hold for those whose training draws no torch randomness per sample (bpr, lightgcn).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from vitrina.data.snapshot import Snapshot
from vitrina.distributed.ray_encoder import ensure_ray
from vitrina.evaluation import Evaluator
from vitrina.models import REGISTRY, Recommender, create
from vitrina.models.bpr import BPR

__all__ = ["fit_on_ray"]


def fit_on_ray(
    snap: Snapshot,
    model_name: str,
    params: dict[str, Any],
    seed: int,
    trainer: dict[str, Any],
    valid: Evaluator,
    workers: int = 2,
    address: str | None = None,
    storage: Path | None = None,
    watch: str = "recall@20",
) -> Recommender:
    """Train `model_name` on `workers` Ray Train workers, validating with `valid`; `trainer` holds
    fit's max_epochs, patience and eval_every. Returns the best model, loaded from the checkpoint."""
    from ray.train import Checkpoint, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if model_name not in REGISTRY or not issubclass(REGISTRY[model_name], BPR):
        raise ValueError(f"{model_name}: data-parallel training covers the BPR family (bpr, lightgcn, freedom, ...)")
    ensure_ray(address, num_cpus=workers)

    def loop(_: dict[str, Any]) -> None:
        import ray.train

        context = ray.train.get_context()
        torch.set_num_threads(1)
        model = create(model_name, seed=seed, **params)
        assert isinstance(model, BPR)
        model.shard = (context.get_world_rank(), context.get_world_size())
        model.fit(snap, valid, watch=watch, progress=False, on_epoch=ray.train.report, **trainer)
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if context.get_world_rank() == 0:
                model.save(Path(folder) / "model")
                checkpoint = Checkpoint.from_directory(folder)
            ray.train.report({"best_epoch": model.report.best_epoch, **model.report.best_valid}, checkpoint=checkpoint)

    run = TorchTrainer(
        loop,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=False),
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(storage_path=str(storage) if storage else None, name=f"vitrina-{model_name}"),
    ).fit()
    if run.checkpoint is None:
        raise RuntimeError(f"{model_name}: the Ray Train run ended without a checkpoint ({run.error})")
    with run.checkpoint.as_directory() as folder:
        return Recommender.load(Path(folder) / "model")
