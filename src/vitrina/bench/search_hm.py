"""`vitrina bench search --dataset hm`: finding H&M articles by name, by description and by voice.

Relevance: an article's product is the first 7 digits of its id (colour variants share it).

- Name queries: each of `n_queries` distinct product names (seeded sample), typed as the catalogue
  writes it; relevant: every article with that name.
- Description sentences: the first sentence of a product's description (products drawn at random,
  seeded, among the indexed ones), as a shopper would describe what they want; relevant: every
  article carrying that whole description (the colour variants, and any product described alike).
- Withheld descriptions: 20% of the products (seeded) are indexed without their description
  (full-text and text vectors), and each one's description is the query; relevant: that product's
  articles. The description cannot match itself, only the name, category and colour, while other
  products with near-identical descriptions compete: the hardest of the three, a cold-item test.
- Text -> photo: the distinct item texts (with a photo) are split 70/10/20 at random (seeded), every
  item going with its text (colour variants share one, so no held-out text is seen in training); a
  `ContrastiveAligner` (the model settings `bench align` selected) learns the joint space on the
  70% (early stopping on the 10%); each held-out item's text (the featurize text fields) then searches
  the photos of every item (a `VectorIndex` of aligned photo vectors, the engine's "text-image"
  retriever); relevant: the photos of the items with that exact text (colour variants share it).
  Unlike `bench align` (four photo views, mirrored copies), one centre view per photo.
- Voice: `n_voice` of the name queries (drawn at random) spoken by espeak-ng (en-us), transcribed by the configured
  recogniser (Whisper base); word error rate of the transcript against the typed name (both
  normalised: lower case, punctuation dropped, digits split from letters), and
  Recall@10 / MRR of the hybrid search on the transcripts next to the same queries typed.

Recall@10 = relevant articles in the top 10 / min(relevant, 10); MRR counts the first relevant
article within the top 10. Nothing is tuned: every mode runs on the `[search]` defaults.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from vitrina.bench.search import MODES, open_engine
from vitrina.config import Config
from vitrina.data.datasets import load_dataset
from vitrina.features.audio import AudioSettings
from vitrina.features.featurize import dataset_text_fields, feature_store, featurize
from vitrina.features.text import item_text
from vitrina.features.text_encoders import text_encoder_from_config
from vitrina.fusion.align import ContrastiveAligner
from vitrina.search.engine import SearchEngine, SearchError
from vitrina.search.vector import VectorIndex

__all__ = ["ranking", "run", "table", "word_error_rate"]

K = 10
HELD_OUT = 0.2
# The aligner's model settings that `vitrina bench align` selected on validation (results/align-hm.json).
ALIGNER = {"head": "mlp", "input_dropout": 0.3, "noise": 0.5}


def word_error_rate(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words) between lower-cased word sequences, punctuation ignored."""
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1], len(ref)


def _words(text: str) -> list[str]:
    """Words for WER, normalised as speech-recognition benchmarks do: lower case, "C.A." -> "ca",
    punctuation to spaces, digits split from letters ("5pack" -> "5 pack")."""
    text = re.sub(r"(?<=\w)\.(?=\w)", "", text.lower())
    text = re.sub(r"(?<=\d)(?=[^\W\d])|(?<=[^\W\d])(?=\d)", " ", text)
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text).split()


def ranking(found: Sequence[str], relevant: set[str], k: int = K) -> tuple[float, float]:
    """(Recall@k over min(|relevant|, k), reciprocal rank of the first relevant in the top k)."""
    top = list(found[:k])
    recall = len(relevant.intersection(top)) / min(len(relevant), k)
    first = next((r for r, i in enumerate(top, 1) if i in relevant), None)
    return recall, 1.0 / first if first else 0.0


def _speak(texts: Sequence[str], folder: Path) -> list[Path]:
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (Debian package espeak-ng): the voice queries need it")
    paths = []
    for n, text in enumerate(texts):
        path = folder / f"q{n}.wav"
        # Lower case: shoppers do not speak in capitals, but espeak spells a capitalised word out.
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text.lower()], check=True)
        paths.append(path)
    return paths


def _scores(engine: SearchEngine, queries: Sequence[str], relevant: Sequence[set[str]], mode: str) -> dict:
    recalls, rrs = [], []
    for q, rel in tqdm(zip(queries, relevant, strict=True), total=len(queries), desc=mode, unit="query"):
        try:
            found = [h.item_id for h in engine.search(q, mode, page_size=K).hits]
        except SearchError:  # a name made only of stop words finds nothing lexically
            found = []
        r, rr = ranking(found, rel)
        recalls.append(r)
        rrs.append(rr)
    return {"recall@10": float(np.mean(recalls)), "mrr": float(np.mean(rrs)), "queries": len(queries)}


def _text_to_image(cfg: Config, raw: Any, item_ids: pd.Series, rng: np.random.Generator) -> dict[str, Any]:
    """Text -> photo search for items the aligner never saw: see the module docstring."""
    features, _ = featurize(cfg, raw, ("text", "image"), progress=True)
    ids = item_ids.to_numpy(dtype=object)
    text, has_text = features["text"].aligned(ids)
    image, has_photo = features["image"].aligned(ids)
    usable = np.flatnonzero(has_text & has_photo)
    raw_text = np.array(item_text(raw.items, dataset_text_fields(cfg, "hm")), dtype=object)
    # Split by text, not by item: colour variants share a text, and a held-out text must be new to
    # the aligner (a variant in training would hand it the answer).
    groups, group_of = np.unique(raw_text[usable], return_inverse=True)
    order = rng.permutation(len(groups))
    n_valid, n_test = round(0.1 * len(groups)), round(0.2 * len(groups))
    fold = np.zeros(len(groups), dtype=int)
    fold[order[:n_valid]], fold[order[n_valid : n_valid + n_test]] = 1, 2
    train, valid, test = (usable[fold[group_of] == f] for f in range(3))
    aligner = ContrastiveAligner(**ALIGNER, seed=cfg.seed)
    aligner.fit(text, image, train, valid, progress=True)
    index = VectorIndex(aligner.params["dim"])
    index.add(list(ids[usable]), aligner.embed_image(image[usable]))
    by_text = pd.Series(ids[usable]).groupby(raw_text[usable]).agg(set)
    test = test[np.unique(raw_text[test], return_index=True)[1]]  # one query per held-out text
    found = index.search(aligner.embed_text(text[test]), K)
    relevant = [by_text[raw_text[row]] for row in test]
    recalls, rrs = zip(*(ranking([i for i, _ in f], rel) for f, rel in zip(found, relevant, strict=True)), strict=True)
    return {
        "queries": len(test),
        "photos_indexed": len(usable),
        "aligner": dict(ALIGNER),
        "aligner_best_epoch": aligner.report.best_epoch,
        "recall@10": float(np.mean(recalls)),
        "mrr": float(np.mean(rrs)),
        # A random top 10 holds K·|rel|/N relevant photos in expectation: over min(|rel|, K) that is
        # max(|rel|, K)/N.
        "random_recall@10": float(np.mean([max(len(rel), K) for rel in relevant]) / len(usable)),
    }


def run(
    cfg: Config,
    modes: Sequence[str] = ("lexical", "semantic", "hybrid"),
    n_queries: int = 2000,
    n_voice: int = 200,
) -> dict[str, Any]:
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown search mode(s) {unknown}; known: {', '.join(MODES)}")
    raw = load_dataset("hm", cfg.data_dir)
    rng = np.random.default_rng(cfg.seed)
    items = raw.items.copy()
    item_ids = items["item_id"].astype(str)
    product = item_ids.str[:7]
    products = np.array(sorted(product.unique()))
    held = set(rng.choice(products, round(HELD_OUT * len(products)), replace=False))
    held_rows = product.isin(held).to_numpy()
    descriptions = items["description"].copy()
    items.loc[held_rows, "description"] = None

    encoder = text_encoder_from_config(cfg)
    settings_fields = ("title", "description", "category_path", "brand")
    texts = item_text(items, settings_fields)
    vectors = feature_store(cfg).encode(encoder, texts, progress=True).vectors
    engine = open_engine(cfg, "hm-search", items, vectors, encoder)

    names = items["title"].fillna("").astype(str)
    by_name = item_ids.groupby(names.str.lower()).agg(set)
    name_pool = sorted(n for n in by_name.index if n.strip())
    picked = [name_pool[i] for i in sorted(rng.choice(len(name_pool), min(n_queries, len(name_pool)), replace=False))]
    typed = {n: names[names.str.lower() == n].iloc[0] for n in picked}
    by_product = item_ids.groupby(product).agg(set)
    desc_queries, desc_relevant = [], []
    for p in sorted(held):
        text = descriptions[(product == p).to_numpy()].dropna()
        if len(text) and str(text.iloc[0]).strip():
            desc_queries.append(str(text.iloc[0]))
            desc_relevant.append(by_product[p])

    # Description sentences: the first sentence of an indexed product's description; relevant: the
    # articles carrying that whole description (the product's colour variants, and any other product
    # described word for word alike).
    by_description = item_ids.groupby(descriptions.fillna("").astype(str)).agg(set)
    indexed_products = [p for p in products if p not in held]
    sentence_queries, sentence_relevant = [], []
    for p in rng.choice(indexed_products, min(n_queries, len(indexed_products)), replace=False):
        text = descriptions[(product == p).to_numpy()].dropna()
        first = str(text.iloc[0]).split(". ")[0].strip().rstrip(".") if len(text) else ""
        if len(first.split()) >= 3:
            sentence_queries.append(first)
            sentence_relevant.append(by_description[str(text.iloc[0])])

    results = []
    for mode in modes:
        results.append(
            {
                "mode": mode,
                "name": _scores(engine, [typed[n] for n in picked], [by_name[n] for n in picked], mode),
                "description": _scores(engine, desc_queries, desc_relevant, mode),
                "sentence": _scores(engine, sentence_queries, sentence_relevant, mode),
            }
        )

    text_image = _text_to_image(cfg, raw, item_ids, rng)

    voice_names = [picked[i] for i in rng.permutation(len(picked))[:n_voice]]
    recognizer = AudioSettings.from_config(cfg).recognizer()
    edits = words = 0
    transcripts = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in tqdm(
            zip(voice_names, _speak([typed[n] for n in voice_names], Path(tmp)), strict=True),
            total=len(voice_names),
            desc="transcribe",
            unit="clip",
        ):
            heard = recognizer.transcribe(str(path), language="en").text
            e, w = word_error_rate(typed[name], heard)
            edits, words = edits + e, words + w
            transcripts.append(heard)
    relevant = [by_name[n] for n in voice_names]
    voice = {
        "queries": len(voice_names),
        "wer": edits / max(words, 1),
        "typed": _scores(engine, [typed[n] for n in voice_names], relevant, "hybrid"),
        "spoken": _scores(engine, [t if t.strip() else "?" for t in transcripts], relevant, "hybrid"),
        "examples": [{"typed": typed[n], "heard": t} for n, t in list(zip(voice_names, transcripts, strict=True))[:10]],
    }
    return {
        "dataset": "hm",
        "items": len(items),
        "held_out_products": len(held),
        "name_queries": len(picked),
        "description_queries": len(desc_queries),
        "sentence_queries": len(sentence_queries),
        "text_encoder": encoder.name,
        "recognizer": type(recognizer).__name__,
        "results": results,
        "text_to_image": text_image,
        "voice": voice,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "| mode | name R@10 / MRR | description sentence R@10 / MRR | withheld description R@10 / MRR |",
        "|---|---|---|---|",
    ]
    for r in result["results"]:
        cells = [f"{r[k]['recall@10']:.4f} / {r[k]['mrr']:.4f}" for k in ("name", "sentence", "description")]
        lines.append(f"| {r['mode']} | " + " | ".join(cells) + " |")
    t = result["text_to_image"]
    lines += [
        "",
        f"Text -> photo on {t['queries']} held-out items over {t['photos_indexed']:,} photos: R@10 "
        f"{t['recall@10']:.4f}, MRR {t['mrr']:.4f} (random {t['random_recall@10']:.4f})",
    ]
    v = result["voice"]
    lines += [
        "",
        f"Voice ({v['queries']} espeak-ng clips, {result['recognizer']}): WER {v['wer']:.3f}; hybrid R@10 "
        f"{v['spoken']['recall@10']:.4f} spoken vs {v['typed']['recall@10']:.4f} typed "
        f"(MRR {v['spoken']['mrr']:.4f} vs {v['typed']['mrr']:.4f})",
    ]
    return "\n".join(lines)
