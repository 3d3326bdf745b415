"""Text preprocessing: every cleaning rule, language detection, tokenisers, stop words, stems,
keywords and item texts on hand-written cases, then on real reviews-zh and H&M rows."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from vitrina.config import Config, ConfigError
from vitrina.data.schema import columns
from vitrina.features.text import (
    TextPreprocessor,
    clean_text,
    detect_language,
    detect_languages,
    extract_keywords,
    item_text,
    jieba_keywords,
    stem,
    stopwords,
    tokenize,
)


def _data_dir() -> Path:
    env = os.environ.get("VITRINA_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _real_csv(relative: str, nrows: int) -> pd.DataFrame:
    path = _data_dir() / relative
    if not path.is_file():
        pytest.skip(f"real data file {path} not found (set VITRINA_DATA_DIR to the shared data dir)")
    return pd.read_csv(path, nrows=nrows, dtype=str, encoding="utf-8")


# --- cleaning ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<p>Soft <b>cotton</b></p><p>shirt</p>", "Soft cotton shirt"),
        ("<script>alert(1)</script>Mug<!-- sku 7 --><style>p{}</style>", "Mug"),
        ("3 < 5 and 7 > 2", "3 < 5 and 7 > 2"),  # comparisons are not tags
        ("Tom &amp; Jerry&nbsp;mug &quot;XL&quot; &#8482;", 'Tom & Jerry mug "XL" TM'),  # NFKC spells out ™
        ("Line one&lt;br /&gt;line two", "Line one line two"),  # markup that arrived escaped
        ("ｉＰｈｏｎｅ　１５！", "iPhone 15!"),  # NFKC: full-width forms and the ideographic space
        ("\ufeffso\u200bft of\u00adfice ﬁt", "soft office fit"),  # BOM, zero-width, soft hyphen, ligature
        ("see https://shop.example.com/p?id=1&x=2. now", "see. now"),
        ("go to www.example.org/sale, or example.com", "go to, or"),
        ("看http://t.cn/abc很好", "看 很好"),  # a link glued to Chinese text
        ("mail bob.smith+shop@mail.example.co.uk today", "mail today"),
        ("wow!!!! really??? 好。。。。 ok…… --- ~~~ 😀😀😀", "wow! really? 好。 ok. - ~ 😀"),
        ("  a \t\n b\r\n  c  ", "a b c"),
    ],
)
def test_every_cleaning_rule(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_clean_handles_missing_values_and_optional_lowercase() -> None:
    for missing in (None, float("nan"), pd.NA, ""):
        assert clean_text(missing) == ""
    assert clean_text(42) == "42"
    assert clean_text("Big RED Mug", lowercase=True) == "big red mug"
    assert clean_text("Big RED Mug") == "Big RED Mug"


# --- language detection -----------------------------------------------------------------------


def test_language_detection() -> None:
    assert detect_language("A soft cotton shirt for summer") == "en"
    assert detect_language("这款手机的电池续航很好") == "zh"
    assert detect_language("我的iPhone电池续航很好，屏幕也很清楚，物流很快") == "zh"  # a quoted brand stays zh
    assert detect_language("Apple iPhone 15 Pro 手机 256GB 黑色") == "mixed"
    assert detect_language("Мягкая хлопковая рубашка") == "other"
    for empty in ("", None, "12345 !!!", float("nan")):
        assert detect_language(empty) == "unknown"  # type: ignore[arg-type]
    assert detect_languages(["shirt", "衬衫", ""]) == ["en", "zh", "unknown"]
    # Cleaning first keeps a link from making a Chinese review look mixed.
    review = "推荐这本书http://bookapp.book.qq.com/origin/workintro/5/work_1704965.shtml"
    assert detect_language(review) == "mixed" and TextPreprocessor().language(review) == "zh"


# --- tokenisation, stop words, stems ------------------------------------------------------------


def test_jieba_segments_chinese_and_stop_words_go() -> None:
    tokens = TextPreprocessor().tokens("这款手机的电池续航很好")
    assert {"手机", "电池", "续航"} <= set(tokens)
    assert "的" not in tokens and "很" not in tokens
    assert "的" in TextPreprocessor(remove_stopwords=False).tokens("这款手机的电池续航很好")


def test_english_tokenizer_edge_cases() -> None:
    text = "state-of-the-art 30-inch T-shirt, women's don’t 3.5mm, 1/2 price -- well- _x_ e-mail."
    assert tokenize(clean_text(text, lowercase=True)) == [
        "state-of-the-art",
        "30-inch",
        "t-shirt",
        "women",
        "don't",
        "3.5mm",
        "1",
        "2",
        "price",
        "well",
        "x",
        "e-mail",
    ]
    assert tokenize("") == []
    assert tokenize("!!! ... ---") == []


def test_mixed_text_splits_han_runs_from_the_rest() -> None:
    tokens = TextPreprocessor().tokens("Apple iPhone 15 Pro 手机 256GB 黑色，电池续航很好")
    assert tokens[:6] == ["apple", "iphone", "15", "pro", "手机", "256gb"]
    assert {"黑色", "电池", "续航"} <= set(tokens)


def test_filters_stop_words_numbers_and_short_tokens() -> None:
    text = "The 2 shirts are NOT the same size: 30-inch and 32"
    assert TextPreprocessor().tokens(text) == ["2", "shirts", "not", "size", "30-inch", "32"]  # negations stay
    assert TextPreprocessor(keep_numbers=False, min_token_len=3).tokens(text) == ["shirts", "not", "size", "30-inch"]
    assert TextPreprocessor(lowercase=False).tokens(text) == ["2", "shirts", "NOT", "size", "30-inch", "32"]
    en, zh = stopwords("en"), stopwords("zh")
    assert {"the", "and", "of"} <= en and {"的", "了", "是", "我们"} <= zh
    assert not ({"not", "no", "never"} & en) and not ({"不", "没有", "好"} & zh)
    assert stopwords() == en | zh and 150 <= len(en) <= 250 and 150 <= len(zh) <= 250
    with pytest.raises(ValueError, match="no stop words for language 'fr'"):
        stopwords("fr")


def test_snowball_stemming() -> None:
    assert [stem(w) for w in ("running", "batteries", "connected", "connection", "shirts", "generously")] == [
        "run",
        "batteri",
        "connect",
        "connect",
        "shirt",
        "generous",
    ]
    assert stem("手机") == "手机" and stem("café") == "café"
    assert TextPreprocessor(stem=True).tokens("Running shoes with Batteries 手机") == ["run", "shoe", "batteri", "手机"]


# --- keywords -----------------------------------------------------------------------------------


def test_tfidf_keywords_rank_distinctive_terms_first() -> None:
    corpus = [
        "red cotton shirt with red buttons",
        "blue cotton shirt",
        "wool scarf, warm wool",
        "这款手机的电池续航很好，手机屏幕也清楚",
    ]
    kw = extract_keywords(corpus, top_k=3)
    assert [t for t, _ in kw[0]] == ["red", "buttons", "cotton"]  # tf 2 first; then idf: buttons beats cotton
    assert [t for t, _ in kw[1]] == ["blue", "cotton", "shirt"]  # ties in cotton/shirt break alphabetically
    assert kw[2][0][0] == "wool" and kw[3][0][0] == "手机"
    assert all(len(k) == 3 and [s for _, s in k] == sorted((s for _, s in k), reverse=True) for k in kw)
    assert extract_keywords(["", None], top_k=5) == [[], []]


def test_jieba_keywords_without_a_corpus() -> None:
    text = "这款手机的电池续航很好，手机屏幕也很清楚"
    assert jieba_keywords(text, 2)[0][0] == "手机"
    assert jieba_keywords(text, 2, method="textrank")[0][0] == "手机"
    with pytest.raises(ValueError, match="unknown keyword method 'lda'"):
        jieba_keywords(text, method="lda")


# --- item texts and configuration ---------------------------------------------------------------


def test_item_text_joins_configured_fields_and_skips_missing() -> None:
    items = pd.DataFrame(
        [
            ["i1", "Linen shirt", "Cool <b>linen</b>.", "Men > Shirts", "Acme", 39.5, [], None, {}],
            ["i2", "Mug", None, float("nan"), "  ", 4.0, [], None, {}],
            ["i3", None, None, None, None, 1.0, [], None, {}],
        ],
        columns=columns("items"),
    )
    assert item_text(items) == ["Linen shirt. Cool <b>linen</b>.. Men > Shirts. Acme", "Mug", ""]
    assert item_text(items, fields=("brand", "title")) == ["Acme. Linen shirt", "Mug", ""]
    assert TextPreprocessor().clean(item_text(items)[0]) == "linen shirt. cool linen. men > shirts. acme"
    with pytest.raises(ValueError, match=r"unknown item field\(s\) \['colour'\]"):
        item_text(items, fields=("title", "colour"))


def test_preprocessor_from_config_and_validation() -> None:
    cfg = Config.load(environ={"VITRINA_FEATURES__TEXT__STEM": "true"})
    pre = TextPreprocessor.from_config(cfg)
    assert pre.stem and pre.lowercase and pre.fields == ("title", "description", "category_path", "brand")
    assert pre.batch(["Running fast", None]) == [["run", "fast"], []]
    with pytest.raises(ConfigError, match="unknown setting 'features.text.stemm'"):
        Config.load(environ={"VITRINA_FEATURES__TEXT__STEMM": "true"})
    with pytest.raises(ConfigError, match="features.text.colour"):
        TextPreprocessor.from_config(Config({"features": {"text": {"colour": 1}}}))
    with pytest.raises(ValueError, match="min_token_len"):
        TextPreprocessor(min_token_len=0)


# --- real data ----------------------------------------------------------------------------------


def test_real_chinese_reviews() -> None:
    reviews = _real_csv("reviews-zh/online_shopping_10_cats.csv", nrows=2000)
    pre = TextPreprocessor()
    first = reviews["review"].iloc[0]
    assert first.startswith("\ufeff") and not pre.clean(first).startswith("\ufeff")  # the file's BOM
    assert {"父母", "刘墉", "孩子"} <= set(pre.tokens(first))
    shouting = reviews["review"][reviews["review"].str.contains("！！", na=False)].iloc[0]
    assert "！！" not in pre.clean(shouting) and "!!" not in pre.clean(shouting)
    linked = reviews["review"][reviews["review"].str.contains("http://", na=False)].iloc[0]
    assert "http" not in pre.clean(linked) and pre.language(linked) == "zh"
    sample = reviews["review"].dropna().head(50).tolist()
    assert set(detect_languages(pre.clean(t) for t in sample)) == {"zh"}
    for tokens in pre.batch(sample):
        assert tokens and not set(tokens) & stopwords()
        assert all(t.strip() == t and any(c.isalnum() for c in t) for t in tokens)


def test_real_hm_descriptions() -> None:
    art = _real_csv("hm/articles.csv", nrows=20)
    items = pd.DataFrame(
        {
            "title": art["prod_name"],
            "description": art["detail_desc"],
            "category_path": art["index_group_name"] + " > " + art["product_type_name"],
            "brand": "H&M",
        }
    )
    texts = item_text(items)
    assert texts[0].startswith("20 den 1p Stockings. Semi shiny nylon stockings") and texts[0].endswith(". H&M")
    pre = TextPreprocessor()
    assert set(detect_languages(pre.clean(t) for t in texts)) == {"en"}
    tokens = pre.tokens(texts[0])
    assert {"stockings", "nylon", "suspender", "denier", "h&m"} - set(tokens) == {"h&m"}  # "&" splits h & m
    assert {"with", "a", "the", "at"}.isdisjoint(tokens)
    kw = extract_keywords(texts, top_k=3)
    assert len(kw) == len(texts) and all(kw)
