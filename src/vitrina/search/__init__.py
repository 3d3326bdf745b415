"""Item-to-item retrieval on item vectors: the "similar items" and "bought together" lists."""

from vitrina.search.similar import similar_items

__all__ = ["similar_items"]
