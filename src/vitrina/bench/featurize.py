"""`vitrina bench featurize`: encoder throughput on this machine, in inputs per second.

Images are timed from the file on disk (decode, preprocessing and the CNN); texts are timed on
titles and on full descriptions, which are many times longer. Every input is encoded (the feature
store is bypassed) after one untimed warm-up batch, with the encoders set up exactly as
`vitrina featurize` sets them up (workers, threads, precision).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from vitrina.config import Config
from vitrina.data.datasets import load_dataset
from vitrina.features.featurize import item_inputs, modality_encoder
from vitrina.features.pool import PooledEncoder
from vitrina.features.throughput import measure_image_throughput, measure_text_throughput


def _close(encoder: Any) -> None:
    if isinstance(encoder, PooledEncoder):
        encoder.close()


def measure(cfg: Config, dataset: str, limit: int | None, text_encoders: list[str]) -> dict[str, Any]:
    raw = load_dataset(dataset, cfg.data_dir)
    items = raw.items if limit is None else raw.items.head(limit)
    raw.items = items.reset_index(drop=True)
    result: dict[str, Any] = {
        "dataset": dataset,
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "texts_per_s": {},
        "descriptions_per_s": {},
    }
    images = [p for p in item_inputs(raw, "image", ("title",)) if p is not None]
    if images:
        encoder = modality_encoder(cfg, "image", images)
        batch = int(cfg.get("features.image.batch_size", 64))
        result["images_per_s"] = measure_image_throughput(encoder, images, batch)
        result["n_images"] = len(images)
        result["image_encoder"] = {"name": encoder.name, "settings": encoder.settings()}
        _close(encoder)
    batch = int(cfg.get("features.text_encoder.batch_size", 128))
    for field, key in (("title", "texts_per_s"), ("description", "descriptions_per_s")):
        texts = [t for t in item_inputs(raw, "text", (field,)) if t is not None]
        if not texts:
            continue
        result[f"n_{field}s"] = len(texts)
        result[f"mean_{field}_chars"] = sum(map(len, texts)) / len(texts)
        for name in text_encoders:
            encoder = modality_encoder(cfg, "text", texts, name=name)
            result[key][name] = measure_text_throughput(encoder, texts, batch)
            _close(encoder)
    return result


def table(result: dict[str, Any]) -> str:
    lines = [
        f"## encoder throughput on {result['dataset']} ({result['cpus']} CPUs)",
        "",
        "| input | encoder | items | per second |",
        "|---|---|---|---|",
    ]
    if "images_per_s" in result:
        enc = result["image_encoder"]["name"]
        lines.append(f"| photos (decode included) | {enc} | {result['n_images']} | {result['images_per_s']:.1f} |")
    for key, label, n in (
        ("texts_per_s", "titles", "n_titles"),
        ("descriptions_per_s", "descriptions", "n_descriptions"),
    ):
        for name, speed in result[key].items():
            lines.append(f"| {label} | {name} | {result[n]} | {speed:.1f} |")
    return "\n".join(lines)


def write_json(path: str | os.PathLike[str], result: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return path
