"""What every text encoder shares: one cleaning step, batching with a progress bar, queries vs passages.

Each encoder cleans text with the same `TextPreprocessor` that keywords and search use, so a title
with HTML or full-width characters gets the same vector as its clean form everywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
from tqdm.auto import tqdm

from vitrina.features.encoder import Encoder, l2_normalize
from vitrina.features.text import TextPreprocessor

T = TypeVar("T")


def iter_batches(order: np.ndarray, batch_size: int, progress: bool, desc: str) -> Iterator[np.ndarray]:
    """Index arrays of at most `batch_size` rows taken from `order`, ticking a tqdm bar per batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    with tqdm(total=len(order), desc=desc, unit="text", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield idx
            bar.update(len(idx))


class TextEncoder(Encoder):
    """A text encoder: cleans its input (None and NaN become ""), then embeds it batch by batch.

    Subclasses implement `_embed_batch`; asymmetric models (e5) also treat `query=True` differently,
    so search can embed queries and product texts the way the model was trained.
    """

    modality = "text"

    def __init__(self, preprocessor: TextPreprocessor | None = None) -> None:
        self.preprocessor = preprocessor or TextPreprocessor()

    def settings(self) -> dict[str, Any]:
        """The preprocessing (cleaning, and for tokenising encoders the tokens); `fields` only chooses
        which text an item gets, and that text's content hash covers it."""
        prep = dataclasses.asdict(self.preprocessor)
        prep.pop("fields")
        return {"preprocessor": prep}

    def encode(self, texts: Sequence[str | None], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Product texts (passages) -> L2-normalised float32 [n, dim]."""
        return self._encode(texts, batch_size, progress, query=False)

    def encode_queries(self, texts: Sequence[str | None], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Search queries -> L2-normalised float32 [n, dim], comparable with `encode` by dot product."""
        return self._encode(texts, batch_size, progress, query=True)

    def _encode(self, texts: Sequence[str | None], batch_size: int, progress: bool, query: bool) -> np.ndarray:
        cleaned = [self.preprocessor.clean(t) for t in texts]
        return self._run(cleaned, batch_size, progress, lambda batch: self._embed_batch(batch, query))

    def _run(
        self,
        items: Sequence[T],
        batch_size: int,
        progress: bool,
        embed: Callable[[list[T]], np.ndarray],
        order: np.ndarray | None = None,
    ) -> np.ndarray:
        """Embed `items` (texts, token ids) in batches taken in `order` (default: as given).

        Rows come back in input order whatever the batching order, which is what lets encoders sort by
        length for speed.
        """
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        order = np.arange(len(items)) if order is None else order
        for idx in iter_batches(order, batch_size, progress, desc=f"encode {self.name}"):
            out[idx] = embed([items[i] for i in idx])
        return l2_normalize(out)

    def _embed_batch(self, texts: list[str], query: bool) -> np.ndarray:
        raise NotImplementedError
