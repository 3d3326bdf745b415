"""Each ranking metric against values worked out by hand."""

import math

import pytest
import torch

from vitrina.evaluation.metrics import RANKING_METRICS

HITS = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 1, 0]], dtype=torch.float32)
N_POS = torch.tensor([2.0, 3.0])


def metric(name: str, k: int) -> list[float]:
    return RANKING_METRICS[name](HITS, N_POS, k).tolist()


def test_recall_divides_by_all_positives() -> None:
    assert metric("recall", 5) == pytest.approx([1.0, 1 / 3])
    assert metric("recall", 1) == pytest.approx([0.5, 0.0])


def test_precision_divides_by_k() -> None:
    assert metric("precision", 5) == pytest.approx([0.4, 0.2])
    assert metric("precision", 2) == pytest.approx([0.5, 0.0])


def test_ndcg_binary_gains_ideal_over_min_pos_k() -> None:
    first = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    second = (1 / math.log2(5)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert metric("ndcg", 5) == pytest.approx([first, second])
    # At k=1 the ideal list holds one positive.
    assert metric("ndcg", 1) == pytest.approx([1.0, 0.0])


def test_mrr_first_hit_within_k() -> None:
    assert metric("mrr", 5) == pytest.approx([1.0, 0.25])
    assert metric("mrr", 3) == pytest.approx([1.0, 0.0])


def test_map_sums_precision_at_hits_over_min_pos_k() -> None:
    assert metric("map", 5) == pytest.approx([(1 + 2 / 3) / 2, 0.25 / 3])
    assert metric("map", 2) == pytest.approx([1 / 2, 0.0])


def test_hit_rate() -> None:
    assert metric("hit", 5) == [1.0, 1.0]
    assert metric("hit", 3) == [1.0, 0.0]
