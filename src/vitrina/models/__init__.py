"""Recommenders, registered by name. Importing this package registers every model."""

from vitrina.models import (  # noqa: F401  (registration)
    als,
    bpr,
    content_knn,
    dpbpr,
    freedom,
    itemknn,
    lgmrec,
    lightgcn,
    mmn,
    pop,
    sasrec,
    vbpr,
)
from vitrina.models.base import REGISTRY, FitReport, Recommender, create

__all__ = ["REGISTRY", "FitReport", "Recommender", "create"]
