"""Recommenders, registered by name. Importing this package registers every model."""

from vitrina.models import als, bpr, content_knn, freedom, itemknn, lightgcn, mmn, pop, vbpr  # noqa: F401  (registration)
from vitrina.models.base import REGISTRY, FitReport, Recommender, create

__all__ = ["REGISTRY", "FitReport", "Recommender", "create"]
