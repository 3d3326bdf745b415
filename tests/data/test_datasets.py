"""Dataset loaders: the real datasets (counts from shared/data/README.md) and tiny generated folders."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vitrina.data.dataset import RawDataset
from vitrina.data.datasets import DATASETS, DatasetInfo, UnknownDatasetError, load_dataset
from vitrina.data.datasets.search import repair_text
from vitrina.data.schema import columns


def _data_dir() -> Path:
    env = os.environ.get("VITRINA_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


DATA_DIR = _data_dir()
_CACHE: dict[str, RawDataset] = {}


def real(name: str) -> RawDataset:
    """Load a real dataset once per test session; skip when the data is not here."""
    folder = DATA_DIR / name
    if not folder.is_dir():
        pytest.skip(f"real dataset folder {folder} not found (set VITRINA_DATA_DIR to the shared data dir)")
    if name not in _CACHE:
        _CACHE[name] = load_dataset(name, DATA_DIR)
    return _CACHE[name]


def _check_schema(ds: RawDataset) -> None:
    for kind in ("items", "users", "interactions", "reviews"):
        assert list(getattr(ds, kind).columns) == columns(kind)
    assert ds.meta["source"] and ds.meta["description"]


# ---------------------------------------------------------------- registry


def test_registry_names_and_fields():
    assert set(DATASETS) == {
        "amazon-baby",
        "amazon-sports",
        "tiktok",
        "amazon-toys-2023",
        "hm",
        "reviews-zh",
        "search-homedepot",
    }
    for name, info in DATASETS.items():
        assert isinstance(info, DatasetInfo) and info.name == name
        assert callable(info.loader) and info.description and info.modalities
    official = {n for n, i in DATASETS.items() if i.has_official_split}
    assert official == {"amazon-baby", "amazon-sports", "tiktok"}
    assert {n for n, i in DATASETS.items() if i.ordered} == {"amazon-toys-2023"}


# ---------------------------------------------------------------- official-split benchmarks

MMREC = {
    # name: (users, items, interactions, {split: count}, type)
    "amazon-baby": (19_445, 7_050, 160_792, {"train": 118_551, "valid": 20_559, "test": 21_682}, "purchase"),
    "amazon-sports": (
        35_598,
        18_357,
        296_337,
        {"train": 218_409, "valid": 37_899, "test": 40_029},
        "purchase",
    ),
    "tiktok": (9_308, 6_710, 68_722, {"train": 59_541, "valid": 3_051, "test": 6_130}, "view"),
}


@pytest.mark.parametrize("name", list(MMREC))
def test_official_split_datasets(name):
    ds = real(name)
    n_users, n_items, n_inter, splits, kind = MMREC[name]
    _check_schema(ds)
    assert ds.summary() == {"items": n_items, "users": n_users, "interactions": n_inter, "reviews": 0}
    # id k is row k: downstream maps row order to dense indices.
    assert ds.items["item_id"].tolist() == [str(k) for k in range(n_items)]
    assert ds.users["user_id"].tolist() == [str(k) for k in range(n_users)]
    inter = ds.interactions
    assert dict(Counter(inter["split"])) == splits
    assert set(inter["type"]) == {kind}
    assert (inter["value"] == 1.0).all() and inter["ts"].isna().all()
    assert inter["event_id"].is_unique
    assert (inter["event_id"] == inter["user_id"] + ":" + inter["item_id"]).all()
    assert ds.meta["official_split"] is True and ds.meta["ordered"] is False
    # Every column of ids holds Python strings.
    assert isinstance(inter["item_id"].iloc[0], str) and isinstance(ds.items["item_id"].iloc[0], str)


def test_amazon_baby_attributes():
    ds = real("amazon-baby")
    first = ds.items["attributes"].iloc[0]
    assert first["asin"] == "097293751X"  # leading zero kept
    assert first["image_url"].startswith("http")
    assert ds.users["attributes"].iloc[0] == {"reviewer_id": "A1HK2FQW6KXQB2"}
    assert ds.items["title"].isna().all()


def test_amazon_sports_text_columns():
    ds = real("amazon-sports")
    titles = ds.items["title"]
    assert titles.notna().sum() == 2_524  # README: real titles for 2,524 of 18,357 items
    assert titles.dropna().map(lambda t: t.strip() == t and t != "").all()
    attrs = ds.items["attributes"]
    assert attrs.map(lambda a: bool(a["keywords_generated"])).all()
    keywords = "ghost armorers tool 332 punch hunting fishing"
    assert attrs.iloc[0] == {"asin": "1881509818", "keywords_generated": keywords}
    assert ds.items["description"].isna().all()  # keywords stay out of title/description
    assert "attributes.keywords_generated" in ds.meta["text_columns"]
    assert "title" in ds.meta["text_columns"]


def test_tiktok_features():
    ds = real("tiktok")
    raw = np.load(DATA_DIR / "tiktok" / "image_feat.npy")
    for key in ("image", "audio"):
        feats = ds.item_features[key]
        assert feats.dtype == np.float32 and feats.shape == (6_710, 128)
    np.testing.assert_array_equal(ds.item_features["image"][123], raw[123].astype(np.float32))


# ---------------------------------------------------------------- sequences


def test_amazon_toys_sequences():
    ds = real("amazon-toys-2023")
    _check_schema(ds)
    assert ds.summary() == {"items": 14_718, "users": 19_026, "interactions": 162_348, "reviews": 0}
    assert ds.meta["ordered"] is True and ds.meta["official_split"] is False
    inter = ds.interactions
    assert set(inter["type"]) == {"purchase"} and inter["split"].isna().all() and inter["ts"].isna().all()
    assert inter["event_id"].is_unique

    with (DATA_DIR / "amazon-toys-2023" / "sequences.jsonl").open(encoding="utf-8") as handle:
        first, second = (json.loads(next(handle)) for _ in range(2))
    assert ds.users["user_id"].iloc[0] == first["user_id"]
    assert ds.users["user_id"].iloc[1] == second["user_id"]
    n1, n2 = len(first["items"]), len(second["items"])
    assert inter["item_id"].iloc[:n1].tolist() == first["items"]
    assert inter["item_id"].iloc[n1 : n1 + n2].tolist() == second["items"]
    assert inter["event_id"].iloc[n1] == f"{second['user_id']}:0"
    # listed user by user, in the users' file order
    changes = (inter["user_id"] != inter["user_id"].shift()).sum()
    assert changes == len(ds.users)
    assert inter["user_id"].drop_duplicates().tolist() == ds.users["user_id"].tolist()
    # titles with CSV quoting are unquoted
    titles = dict(zip(ds.items["item_id"], ds.items["title"], strict=True))
    assert titles["0545498562"] == 'Make Clay Charms (Klutz Craft Kit) 8" Length x 1.19" Width x 9" Height'


# ---------------------------------------------------------------- H&M


def test_hm_catalogue():
    ds = real("hm")
    _check_schema(ds)
    assert ds.summary() == {"items": 11_800, "users": 12_737, "interactions": 0, "reviews": 0}
    items = ds.items
    assert items["item_id"].str.fullmatch(r"\d{10}").all()
    assert items["item_id"].iloc[0] == "0111565001"  # leading zero kept
    first = items.iloc[0]
    assert first["title"] == "20 den 1p Stockings"
    assert first["category_path"] == "Ladieswear > Socks & Tights > Underwear Tights"
    assert first["brand"] == "H&M" and first["price"] is None
    assert first["attributes"]["colour_group_name"] == "Black"
    assert first["attributes"]["department_name"] == "Tights basic"
    assert items["description"].notna().sum() == 11_800 - 7  # 7 articles have no detail_desc

    root = Path(ds.meta["root"])
    assert root.is_absolute() and root == (DATA_DIR / "hm").resolve()
    paths = items["image_paths"]
    assert paths.map(lambda p: p is not None).all()
    assert paths.iloc[0] == ["images/011/0111565001.jpg"]
    assert all((root / p[0]).is_file() for p in paths)

    attrs = ds.users["attributes"]
    keys = {"age", "club_member_status", "fashion_news_frequency", "FN", "Active", "postal_code"}
    assert set(attrs.iloc[0]) == keys
    assert attrs.map(lambda a: a["age"] is None or isinstance(a["age"], float)).all()
    assert attrs.map(lambda a: a["age"] is None).sum() == 60
    assert ds.users["user_id"].is_unique

    co = ds.extras["copurchase"]
    assert list(co.columns) == ["article_id", "co_article_id", "score"] and len(co) == 61_186
    for col in ("article_id", "co_article_id"):
        assert co[col].str.fullmatch(r"\d{10}").all()
    assert co["score"].dtype == np.float64
    assert co["article_id"].isin(items["item_id"]).all()


# ---------------------------------------------------------------- reviews


def test_reviews_zh():
    ds = real("reviews-zh")
    _check_schema(ds)
    rev = ds.reviews
    assert len(rev) == 62_773 and ds.meta["dropped_empty"] == 1
    assert rev["review_id"].is_unique and "zh36425" not in set(rev["review_id"])  # the empty one
    assert rev["review_id"].iloc[0] == "zh0"
    assert not rev["text"].str.contains("\ufeff").any()
    assert rev["text"].iloc[0].startswith("做父母一定要有刘墉")
    assert (rev["text"].str.strip() != "").all()
    assert dict(Counter(rev["label"])) == {1.0: 31_727, 0.0: 31_046}
    cats = ds.extras["review_category"]
    assert cats["review_id"].tolist() == rev["review_id"].tolist()
    expected = ["书籍", "平板", "手机", "水果", "洗发水", "热水器", "蒙牛", "衣服", "计算机", "酒店"]
    assert ds.meta["categories"] == sorted(expected)
    assert cats["category"].value_counts()["热水器"] == 574  # 575 minus the empty review


# ---------------------------------------------------------------- search


def test_search_homedepot():
    ds = real("search-homedepot")
    _check_schema(ds)
    items = ds.items
    assert len(items) == 54_667 and items["item_id"].is_unique
    assert items["item_id"].astype(int).is_monotonic_increasing
    judg = ds.extras["judgments"]
    assert list(judg.columns) == ["query_id", "query", "item_id", "relevance"]
    assert len(judg) == 74_067
    assert judg["query_id"].nunique() == judg["query"].nunique() == 11_795
    assert judg["relevance"].between(1.0, 3.0).all()
    assert judg["item_id"].isin(items["item_id"]).all()

    titles = dict(zip(items["item_id"], items["title"], strict=True))
    paslode = [t for t in items["title"] if t.startswith("Paslode 3 in. x 0.120-Gauge 30")]
    assert paslode and all("30° " in t for t in paslode)
    assert any("Men’s" in t for t in items["title"])
    assert any("Connect™" in t for t in items["title"])
    # no mojibake left
    assert not items["title"].str.contains("å¡|\x89|Û|è_", regex=True).any()
    assert titles["100001"] == "Simpson Strong-Tie 12-Gauge Angle"
    assert ds.meta["encoding"] == "utf-8"


def test_repair_text():
    assert repair_text("Paslode 30å¡ Galvanized") == "Paslode 30° Galvanized"
    assert repair_text("John Deere Men\x89Ûªs Lace") == "John Deere Men’s Lace"
    assert repair_text("Connect\x89ã¢ Camelot") == "Connect™ Camelot"
    assert repair_text("Leviton 180è_ Pir") == "Leviton 180° Pir"
    assert repair_text("10 AWG (5 mmå_) H") == "10 AWG (5 mm²) H"
    assert repair_text("Set åÊ(22-Piece)") == "Set  (22-Piece)"
    assert repair_text("plain ascii") == "plain ascii"
    assert repair_text("café") == "café"  # an unrepairable run stays as it is


# ---------------------------------------------------------------- generated folders


def _write(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


def test_unknown_name_lists_known(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'nope'") as info:
        load_dataset("nope", tmp_path)
    assert isinstance(info.value, KeyError) and isinstance(info.value, UnknownDatasetError)
    for name in DATASETS:
        assert name in str(info.value)


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("amazon-baby", tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("amazon-baby", tmp_path)
    assert str(tmp_path / "amazon-baby") in str(info.value)
    _write(tmp_path / "amazon-baby" / "interactions.tsv", "userID\titemID\tsplit\n0\t0\ttrain\n")
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("amazon-baby", tmp_path)
    assert info.value.filename == str(tmp_path / "amazon-baby" / "items.tsv")
    assert "items.tsv" in str(info.value)


def test_tiny_mmrec_folder_is_ordered_by_id(tmp_path):
    folder = tmp_path / "amazon-sports"
    _write(
        folder / "interactions.tsv",
        "userID\titemID\tsplit\n10\t1\ttrain\n2\t0\ttest\n0\t10\tvalid\n1\t2\ttrain\n"
        + "".join(f"{u}\t{u}\ttrain\n" for u in range(3, 10)),
    )
    rows = [f"{k}\tB{k:09d}\t\tkw {k}\n" for k in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9)]
    rows[1] = "2\t0000000002\t A title \tkw 2\n"
    _write(folder / "items.tsv", "itemID\tasin\ttitle\tkeywords_generated\n" + "".join(rows))
    ds = load_dataset("amazon-sports", tmp_path)
    assert ds.items["item_id"].tolist() == [str(k) for k in range(11)]
    assert ds.users["user_id"].tolist() == [str(k) for k in range(11)]
    assert ds.items["title"].iloc[2] == "A title" and ds.items["title"].iloc[0] is None
    assert ds.items["attributes"].iloc[2] == {"asin": "0000000002", "keywords_generated": "kw 2"}
    assert dict(Counter(ds.interactions["split"])) == {"train": 9, "test": 1, "valid": 1}


def test_tiny_bad_split_label(tmp_path):
    _write(tmp_path / "tiktok" / "interactions.tsv", "userID\titemID\tsplit\n0\t0\tdev\n")
    for key in ("image", "audio"):
        np.save(tmp_path / "tiktok" / f"{key}_feat.npy", np.zeros((1, 4), dtype=np.float16))
    with pytest.raises(ValueError, match="split"):
        load_dataset("tiktok", tmp_path)


def test_tiny_homedepot_latin1(tmp_path):
    text = (
        "id,product_uid,product_title,search_term,relevance\n"
        "1,100002,Café Table,cafe table,3.0\n"
        "2,100001,Angle,angle,2.33\n"
        "3,100002,Café Table,table,1.0\n"
    )
    _write(tmp_path / "search-homedepot" / "train.csv", text, encoding="latin-1")
    ds = load_dataset("search-homedepot", tmp_path)
    assert ds.meta["encoding"] == "latin-1"
    assert ds.items["item_id"].tolist() == ["100001", "100002"]
    assert ds.items["title"].tolist() == ["Angle", "Café Table"]
    assert ds.extras["judgments"]["query_id"].tolist() == [0, 1, 2]


def test_tiny_sequences(tmp_path):
    folder = tmp_path / "amazon-toys-2023"
    _write(folder / "items.tsv", 'asin\ttitle\n0001\t"A ""quoted"" toy"\nB2\tBall\n')
    _write(
        folder / "sequences.jsonl",
        '{"user_id": "u9", "items": ["B2", "0001", "B2"]}\n{"user_id": "u1", "items": ["0001"]}\n',
    )
    ds = load_dataset("amazon-toys-2023", tmp_path)
    assert ds.users["user_id"].tolist() == ["u9", "u1"]
    assert ds.interactions["event_id"].tolist() == ["u9:0", "u9:1", "u9:2", "u1:0"]
    assert ds.interactions["item_id"].tolist() == ["B2", "0001", "B2", "0001"]
    assert ds.items["title"].tolist() == ['A "quoted" toy', "Ball"]
