"""Recommenders, registered by name. Importing this package registers every model."""

from vitrina.models import als, bpr, itemknn, lightgcn, pop  # noqa: F401  (registration)
from vitrina.models.base import REGISTRY, FitReport, Recommender, create

__all__ = ["REGISTRY", "FitReport", "Recommender", "create"]
