"""Full-ranking evaluation with the MMRec protocol."""

from vitrina.evaluation.evaluator import Evaluator
from vitrina.evaluation.metrics import RANKING_METRICS

__all__ = ["RANKING_METRICS", "Evaluator"]
