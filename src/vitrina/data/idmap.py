"""External id <-> dense index maps, saved with every model so predictions speak the shop's ids."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


class UnknownIdError(KeyError):
    """An id the map has never seen (e.g. a user created after the model was trained)."""

    def __str__(self) -> str:
        return str(self.args[0])


class IdMap:
    """Dense indices 0..n-1 in the order ids were given; lookups are vectorised."""

    def __init__(self, ids: Iterable[str], kind: str = "id") -> None:
        self.kind = kind
        self._ids = np.asarray([str(x) for x in ids], dtype=object)
        self._index = {x: i for i, x in enumerate(self._ids)}
        if len(self._index) != len(self._ids):
            raise ValueError(f"duplicate {kind}s in id map")

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external: object) -> bool:
        return str(external) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self._ids, other._ids)

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    def index(self, external: str) -> int:
        try:
            return self._index[str(external)]
        except KeyError:
            raise UnknownIdError(f"unknown {self.kind} '{external}'") from None

    def lookup(self, externals: Sequence[str] | np.ndarray) -> np.ndarray:
        """Indices of many ids at once, -1 for ids the map lacks."""
        index = self._index
        return np.fromiter((index.get(str(x), -1) for x in externals), dtype=np.int64, count=len(externals))

    def to_index(self, externals: Sequence[str] | np.ndarray) -> np.ndarray:
        """Map many ids at once; every unknown id is named in the error."""
        out = self.lookup(externals)
        if (out < 0).any():
            bad = [str(externals[i]) for i in np.flatnonzero(out < 0)[:5]]
            raise UnknownIdError(f"unknown {self.kind}(s): {', '.join(bad)}" + (" ..." if (out < 0).sum() > 5 else ""))
        return out

    def to_ids(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        return self._ids[np.asarray(indices, dtype=np.int64)]

    def to_list(self) -> list[str]:
        return self._ids.tolist()
