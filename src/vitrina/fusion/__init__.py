"""Fusing and aligning modalities: projection heads that put text and photos into one space."""

from vitrina.fusion.align import AlignReport, ContrastiveAligner, cross_modal_recall, duplicate_groups, recall_at_k

__all__ = ["AlignReport", "ContrastiveAligner", "cross_modal_recall", "duplicate_groups", "recall_at_k"]
