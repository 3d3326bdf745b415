"""Full-ranking evaluation: masking, excluded users, short catalogues, AUC and beyond-accuracy."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from vitrina.evaluation import Evaluator


def csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(rows), n_items))


SCORES = torch.tensor(
    [
        [0.9, 0.1, 0.5, 0.3],  # user 0: train {0}, test {2}
        [0.4, 0.3, 0.2, 0.1],  # user 1: train {}, test {} -> excluded
        [0.1, 0.2, 0.3, 0.4],  # user 2: train {3}, test {0, 1}
    ]
)
TRAIN = csr([[0], [], [3]], 4)
TEST = csr([[2], [], [0, 1]], 4)


def scorer(users: np.ndarray) -> torch.Tensor:
    return SCORES[torch.from_numpy(users)]


def test_users_without_targets_are_excluded_and_train_items_masked() -> None:
    out = Evaluator(TRAIN, TEST, ks=(1, 2)).evaluate(scorer)
    assert out["users"] == 2
    # user 0 ranks (masked 0) 2,3,1 -> hit at rank 1; user 2 ranks (masked 3) 2,1,0 -> hit at rank 2.
    assert out["recall@1"] == pytest.approx((1.0 + 0.0) / 2)
    assert out["recall@2"] == pytest.approx((1.0 + 0.5) / 2)
    assert out["precision@2"] == pytest.approx((0.5 + 0.5) / 2)
    assert out["mrr@2"] == pytest.approx((1.0 + 0.5) / 2)


def test_auc_counts_pairs_with_unseen_negatives_only() -> None:
    out = Evaluator(TRAIN, TEST, ks=(1,)).evaluate(scorer)
    # user 0: positive 2 (0.5) beats negatives 1 (0.1) and 3 (0.3): AUC 1.
    # user 2: negatives {2} (0.3); positives 0 (0.1) and 1 (0.2) both lose: AUC 0.
    assert out["auc"] == pytest.approx(0.5)


def test_auc_ties_count_half() -> None:
    flat = torch.zeros(1, 4)
    out = Evaluator(csr([[]], 4), csr([[1]], 4), ks=(1,)).evaluate(lambda u: flat)
    assert out["auc"] == pytest.approx(0.5)


def test_k_larger_than_catalogue_never_counts_masked_items() -> None:
    # Three of four items are training items: the only candidate is item 3, which is not a target.
    train = csr([[0, 1, 2]], 4)
    test = csr([[0]], 4)  # a repeat purchase of a training item: masked, so it cannot be hit
    out = Evaluator(train, test, ks=(50,)).evaluate(lambda u: torch.tensor([[4.0, 3.0, 2.0, 1.0]]))
    assert out["recall@50"] == 0.0
    assert out["coverage@50"] == pytest.approx(0.25)
    out = Evaluator(csr([[]], 4), test, ks=(50,)).evaluate(lambda u: torch.tensor([[4.0, 3.0, 2.0, 1.0]]))
    assert out["recall@50"] == 1.0 and out["ndcg@50"] == 1.0 and out["precision@50"] == pytest.approx(1 / 50)


def test_coverage_novelty_diversity() -> None:
    vectors = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    train = csr([[0], [0], [1]], 4)
    test = csr([[2], [3], [2]], 4)
    scores = torch.tensor([[0.0, 1.0, 0.9, 0.0], [0.0, 1.0, 0.0, 0.9], [0.0, 0.0, 0.9, 1.0]])
    out = Evaluator(train, test, ks=(2,), item_vectors=vectors).evaluate(lambda u: scores[torch.from_numpy(u)])
    # Lists: u0 [1, 2], u1 [1, 3], u2 [3, 2] -> items 1, 2, 3 of 4 recommended.
    assert out["coverage@2"] == pytest.approx(0.75)
    # u0 and u1 mix an x- and a y-item (diversity 1); u2 has two y-items (diversity 0).
    assert out["diversity@2"] == pytest.approx(2 / 3)
    info = -np.log2((np.array([2, 1, 0, 0]) + 1) / 4)
    expected = np.mean([(info[1] + info[2]) / 2, (info[1] + info[3]) / 2, (info[3] + info[2]) / 2])
    assert out["novelty@2"] == pytest.approx(expected)


def test_batches_give_the_same_result_as_one_batch() -> None:
    rng = np.random.default_rng(0)
    train = sp.random(300, 50, density=0.1, random_state=1, format="csr")
    test = sp.random(300, 50, density=0.05, random_state=2, format="csr")
    test = test - test.multiply(train > 0)
    scores = torch.from_numpy(rng.random((300, 50)).astype(np.float32))

    def score(u: np.ndarray) -> torch.Tensor:
        return scores[torch.from_numpy(u)]

    one = Evaluator(train, test, batch_users=1000).evaluate(score)
    many = Evaluator(train, test, batch_users=7).evaluate(score)
    assert one.keys() == many.keys()
    for key in one:
        assert one[key] == pytest.approx(many[key], rel=1e-5), key
