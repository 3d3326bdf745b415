"""Loaders for the real datasets, one module per source format, and a registry by name.

    from vitrina.data.datasets import DATASETS, load_dataset
    ds = load_dataset("amazon-baby", data_dir)   # data_dir holds one folder per dataset

Each dataset lives in `<data_dir>/<name>/`; the data folder is only read, never written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vitrina.data.dataset import RawDataset
from vitrina.data.datasets._common import require
from vitrina.data.datasets.hm import load_hm
from vitrina.data.datasets.mmrec import load_amazon_baby, load_amazon_sports, load_tiktok
from vitrina.data.datasets.reviews import load_reviews_zh
from vitrina.data.datasets.search import load_search_homedepot
from vitrina.data.datasets.sequences import load_amazon_toys_2023

__all__ = ["DATASETS", "DatasetInfo", "UnknownDatasetError", "dataset_folder", "load_dataset"]


@dataclass(frozen=True)
class DatasetInfo:
    """What the registry knows about one dataset. `loader` takes the dataset's own folder."""

    name: str
    loader: Callable[[str | Path], RawDataset]
    description: str
    has_official_split: bool
    ordered: bool  # interactions are per-user sequences in order (no timestamps)
    modalities: tuple[str, ...]
    files: tuple[str, ...]  # the files the loader reads, relative to the dataset folder


class UnknownDatasetError(ValueError, KeyError):
    """A dataset name that is not in the registry (catchable as ValueError or KeyError)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


_INFOS = (
    DatasetInfo(
        "amazon-baby",
        load_amazon_baby,
        "Amazon 2014 Baby 5-core, the exact MMRec split (19,445 users, 7,050 items, 160,792 purchases)",
        has_official_split=True,
        ordered=False,
        modalities=("interactions",),
        files=("interactions.tsv", "items.tsv", "users.tsv"),
    ),
    DatasetInfo(
        "amazon-sports",
        load_amazon_sports,
        "Amazon 2014 Sports and Outdoors 5-core, the exact MMRec split, with item titles and LLM keywords",
        has_official_split=True,
        ordered=False,
        modalities=("interactions", "text"),
        files=("interactions.tsv", "items.tsv"),
    ),
    DatasetInfo(
        "tiktok",
        load_tiktok,
        "TikTok micro-videos, the exact DiffMM split, with 128-d image and audio feature vectors",
        has_official_split=True,
        ordered=False,
        modalities=("interactions", "image_features", "audio_features"),
        files=("interactions.tsv", "image_feat.npy", "audio_feat.npy"),
    ),
    DatasetInfo(
        "amazon-toys-2023",
        load_amazon_toys_2023,
        "Amazon Reviews 2023 Toys and Games: per-user chronological purchase sequences with item titles",
        has_official_split=False,
        ordered=True,
        modalities=("interactions", "text"),
        files=("sequences.jsonl", "items.tsv"),
    ),
    DatasetInfo(
        "hm",
        load_hm,
        "H&M fashion catalogue sample: product photos and text, customers, co-purchase pairs (no purchases)",
        has_official_split=False,
        ordered=False,
        modalities=("image", "text", "copurchase"),
        files=("articles.csv", "customers.csv", "copurchase.csv"),
    ),
    DatasetInfo(
        "reviews-zh",
        load_reviews_zh,
        "Chinese e-commerce reviews with positive/negative sentiment labels over 10 product categories",
        has_official_split=False,
        ordered=False,
        modalities=("reviews", "text"),
        files=("online_shopping_10_cats.csv",),
    ),
    DatasetInfo(
        "search-homedepot",
        load_search_homedepot,
        "Home Depot product search: product titles and graded (query, product) relevance judgments",
        has_official_split=False,
        ordered=False,
        modalities=("text", "search"),
        files=("train.csv",),
    ),
)

DATASETS: dict[str, DatasetInfo] = {info.name: info for info in _INFOS}


def _info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {known}") from None


def dataset_folder(name: str, data_dir: str | Path) -> Path:
    """The folder a dataset is read from: `<data_dir>/<name>` (not checked)."""
    return Path(data_dir) / _info(name).name


def load_dataset(name: str, data_dir: str | Path) -> RawDataset:
    """Load one dataset by registry name from `data_dir` (which holds one folder per dataset).

    Raises UnknownDatasetError (a ValueError) listing the known names for an unknown name, and
    FileNotFoundError naming the expected path when the data dir, the dataset folder or one of its
    files is missing.
    """
    info = _info(name)
    require(Path(data_dir), name, "data directory")
    folder = require(Path(data_dir) / info.name, name, "dataset folder")
    for file in info.files:
        require(folder / file, name)
    ds = info.loader(folder)
    ds.meta["official_split"] = info.has_official_split
    ds.meta["ordered"] = info.ordered
    ds.meta["modalities"] = list(info.modalities)
    return ds
