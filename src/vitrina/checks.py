"""Checks of numbers a user hands over (a price filter, a bid, a budget), with one message shape."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["non_negative"]


def non_negative(name: str, value: Any, error: type[ValueError] = ValueError) -> float:
    """`value` as a finite float ≥ 0, else `error` naming `name` and what was given."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise error(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise error(f"{name}: must be a non-negative finite number, got {value!r}")
    return number
