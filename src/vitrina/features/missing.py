"""What a model reads for an item that lacks a modality: an explicit mask plus a configured fill.

MMRec fills a missing feature with the catalogue mean so the item sits at the centre of the feature
space instead of at the origin (a zero vector is a real, far-away point for a linear projection).
The mask travels with the values, so a model can also ignore those rows outright.
"""

from __future__ import annotations

import numpy as np

FILLS = ("mean", "zero")


def fill_missing(values: np.ndarray, mask: np.ndarray, fill: str = "mean") -> np.ndarray:
    """A float32 copy of `values` whose rows where `mask` is False hold the fill.

    "mean": the mean of the present rows (zeros when no row is present); "zero": zeros.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got '{fill}'")
    values = np.array(values, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (len(values),):
        raise ValueError(f"mask has shape {mask.shape}, expected ({len(values)},)")
    if fill == "mean" and mask.any():
        values[~mask] = values[mask].mean(axis=0)
    else:
        values[~mask] = 0.0
    return values
