"""Typo correction and rank fusion, on hand-checked cases."""

from __future__ import annotations

import pytest

from vitrina.search.rank_fusion import fuse
from vitrina.search.spelling import Speller


@pytest.fixture
def speller() -> Speller:
    s = Speller()
    s.add([("cordless", 40), ("drill", 90), ("grill", 10), ("hammer", 30), ("garden", 20)])
    return s


@pytest.mark.parametrize(
    ("typo", "fix"),
    [("cordles", "cordless"), ("dril", "drill"), ("hamemr", "hammer"), ("gardne", "garden"), ("drlil", "drill")],
)
def test_one_edit_typos_are_corrected(speller: Speller, typo: str, fix: str) -> None:
    assert speller.correct(typo) == fix


def test_known_short_and_far_words_are_left_alone(speller: Speller) -> None:
    assert speller.correct("drill") is None  # known
    assert speller.correct("dri") is None  # too short to guess
    assert speller.correct("hose") is None  # nothing within one edit
    assert speller.correct("xrilk") is None  # two edits from drill


def test_most_frequent_candidate_wins(speller: Speller) -> None:
    assert speller.correct("frill") == "drill"  # drill (90) and grill (10) are both one edit away


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = dict(fuse({"a": [("x", 9.0), ("y", 1.0)], "b": [("y", 0.9)]}, {"a": 1.0, "b": 1.0}, "rrf", rrf_k=60))
    assert fused["x"] == pytest.approx(1 / 61)
    assert fused["y"] == pytest.approx(1 / 62 + 1 / 61)


def test_weighted_fusion_scales_each_list_and_respects_weights() -> None:
    lists = {"a": [("x", 10.0), ("y", 0.0)], "b": [("y", 0.5), ("x", 0.4)]}
    assert [i for i, _ in fuse(lists, {"a": 1.0, "b": 1.0}, "weighted")] == ["x", "y"]  # 1+0 vs 0+1: tie keeps order
    assert [i for i, _ in fuse(lists, {"a": 0.5, "b": 1.0}, "weighted")] == ["y", "x"]
    assert fuse(lists, {"a": 0.0, "b": 0.0}, "weighted") == []


def test_unknown_fusion_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse({}, {}, "borda")
