"""Ray's workers at normal CPU priority on a machine Vitrina starts Ray on itself."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

RAY_NICENESS = "RAY_worker_niceness"  # Ray reads its settings from RAY_<name>, case and all


@contextmanager
def normal_priority() -> Iterator[None]:
    """While Ray starts here: its workers at niceness 0. Ray nices them by 15, which starves them,
    and so the whole job (featurization, training, federated clients), as soon as anything else
    runs on the machine."""
    before = os.environ.get(RAY_NICENESS)
    os.environ[RAY_NICENESS] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RAY_NICENESS, None)
        else:
            os.environ[RAY_NICENESS] = before
