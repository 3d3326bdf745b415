"""`tfidf-svd`: TF-IDF over the catalogue's own tokens, reduced by truncated SVD (latent semantic analysis).

No pretrained weights, so it works for any language the tokeniser handles (Chinese through jieba)
and for shop jargon no pretrained model has seen; the price is that it must be fitted on the
catalogue first. The fitted state is plain arrays saved as .npz, loaded without pickle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from vitrina.features.encoder import l2_normalize, register_encoder
from vitrina.features.text import TextPreprocessor
from vitrina.features.text_encoder_base import TextEncoder, iter_batches

FORMAT = "vitrina.tfidf-svd"
FORMAT_VERSION = 1


@register_encoder
class TfidfSvdEncoder(TextEncoder):
    """TF-IDF (smooth idf, optional 1 + log tf, L2 rows) projected on the top `dim` singular vectors.

    A text with no known token (empty, None, all stop words or unseen words) gets a zero vector.
    """

    name = "tfidf-svd"
    version = "1"

    def __init__(
        self,
        dim: int = 256,
        min_df: int = 2,
        sublinear_tf: bool = True,
        seed: int = 0,
        preprocessor: TextPreprocessor | None = None,
    ) -> None:
        super().__init__(preprocessor)
        if dim < 1:
            raise ValueError(f"dim must be at least 1, got {dim}")
        if min_df < 1:
            raise ValueError(f"min_df must be at least 1, got {min_df}")
        self.requested_dim = dim
        self.dim = dim
        self.min_df = min_df
        self.sublinear_tf = sublinear_tf
        self.seed = seed
        self.vocabulary: dict[str, int] = {}
        self.idf = np.zeros(0, dtype=np.float32)
        self.components = np.zeros((0, 0), dtype=np.float32)  # [dim, n_terms]

    @property
    def is_fitted(self) -> bool:
        return bool(self.vocabulary)

    def settings(self) -> dict[str, Any]:
        """The fitted state itself (a digest of vocabulary, idf and basis): refitting on another
        catalogue changes every vector."""
        if not self.is_fitted:
            raise RuntimeError("an unfitted tfidf-svd encoder has no output to identify: fit or load it first")
        digest = hashlib.sha256()
        digest.update("\n".join(sorted(self.vocabulary, key=self.vocabulary.__getitem__)).encode("utf-8"))
        digest.update(self.idf.tobytes())
        digest.update(self.components.tobytes())
        return super().settings() | {"sublinear_tf": self.sublinear_tf, "state": digest.hexdigest()[:16]}

    def fit(self, texts: Sequence[str | None]) -> TfidfSvdEncoder:
        """Learn vocabulary, idf and the SVD basis from the catalogue texts.

        `dim` is clipped to min(texts, terms): SVD cannot find more directions than that.
        """
        docs = self.preprocessor.batch(texts)
        df = Counter(t for doc in docs for t in set(doc))
        terms = sorted(t for t, c in df.items() if c >= self.min_df)  # sorted: same input, same columns
        if not terms:
            raise ValueError(
                f"no token occurs in at least min_df={self.min_df} of the {len(docs)} texts; "
                "give more texts or lower min_df"
            )
        self.vocabulary = {t: i for i, t in enumerate(terms)}
        n = len(docs)
        counts = np.array([df[t] for t in terms], dtype=np.float64)
        self.idf = (np.log((1.0 + n) / (1.0 + counts)) + 1.0).astype(np.float32)
        from sklearn.utils.extmath import randomized_svd  # heavy import, needed for fitting only

        matrix = self._tfidf(docs)
        k = min(self.requested_dim, *matrix.shape)
        _, _, vt = randomized_svd(matrix, k, random_state=self.seed)
        self.components = np.ascontiguousarray(vt, dtype=np.float32)
        self.dim = k
        return self

    def _tfidf(self, docs: list[list[str]]) -> sp.csr_matrix:
        """Rows of L2-normalised TF-IDF over the fitted vocabulary; unknown tokens are dropped."""
        indptr, indices, data = [0], [], []
        for doc in docs:
            known = Counter(self.vocabulary[t] for t in doc if t in self.vocabulary)
            cols = sorted(known)
            indices.extend(cols)
            data.extend(known[c] for c in cols)
            indptr.append(len(indices))
        tf = np.asarray(data, dtype=np.float32)
        if self.sublinear_tf:
            tf = 1.0 + np.log(tf)
        values = tf * self.idf[np.asarray(indices, dtype=np.int64)]
        matrix = sp.csr_matrix(
            (values, np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)),
            shape=(len(docs), len(self.vocabulary)),
            dtype=np.float32,
        )
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        return sp.diags(1.0 / np.maximum(norms, 1e-12)).astype(np.float32) @ matrix

    def _encode(self, texts: Sequence[str | None], batch_size: int, progress: bool, query: bool) -> np.ndarray:
        # One vector space for queries and items: TF-IDF is symmetric.
        if not self.is_fitted:
            raise RuntimeError("tfidf-svd encoder is not fitted: call fit(catalogue_texts) or load(path) first")
        texts = list(texts)  # positional access, also for a pandas Series
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for idx in iter_batches(np.arange(len(texts)), batch_size, progress, desc=f"encode {self.name}"):
            docs = self.preprocessor.batch(texts[i] for i in idx)
            out[idx] = self._tfidf(docs) @ self.components.T
        return l2_normalize(out)

    def save(self, path: str | Path) -> Path:
        """Write vocabulary, idf, SVD basis and settings to one .npz (arrays and JSON, no pickle)."""
        if not self.is_fitted:
            raise RuntimeError("nothing to save: the tfidf-svd encoder is not fitted")
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"tfidf-svd encoders are saved as .npz, got {path}")
        settings = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "requested_dim": self.requested_dim,
            "min_df": self.min_df,
            "sublinear_tf": self.sublinear_tf,
            "seed": self.seed,
            "preprocessor": dataclasses.asdict(self.preprocessor),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        np.savez_compressed(
            path,
            settings=np.array(json.dumps(settings)),
            vocabulary=np.array(terms, dtype=str),
            idf=self.idf,
            components=self.components,
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> TfidfSvdEncoder:
        """Read what `save` wrote; refuses files of another format or version."""
        with np.load(Path(path), allow_pickle=False) as arrays:
            settings = json.loads(str(arrays["settings"]))
            if settings.get("format") != FORMAT or settings.get("format_version") != FORMAT_VERSION:
                raise ValueError(
                    f"{path}: not a {FORMAT} v{FORMAT_VERSION} file "
                    f"(format {settings.get('format')!r}, version {settings.get('format_version')!r})"
                )
            pre = dict(settings["preprocessor"])
            pre["fields"] = tuple(pre["fields"])
            encoder = cls(
                dim=settings["requested_dim"],
                min_df=settings["min_df"],
                sublinear_tf=settings["sublinear_tf"],
                seed=settings["seed"],
                preprocessor=TextPreprocessor(**pre),
            )
            encoder.vocabulary = {str(t): i for i, t in enumerate(arrays["vocabulary"])}
            encoder.idf = arrays["idf"].astype(np.float32)
            encoder.components = arrays["components"].astype(np.float32)
        encoder.dim = encoder.components.shape[0]
        return encoder
