"""Published numbers on the exact splits in ../shared/data, with their sources.

Only numbers measured on the same split and protocol (full ranking, MMRec masking) belong here.
"""

from __future__ import annotations

MMREC_SOURCE = "MMRec toolbox evaluation / SMORE paper (WSDM 2025), MMRec split"
DIFFMM_SOURCE = "DiffMM paper, Table 1 (DiffMM split)"

# dataset -> model -> (recall@20, ndcg@20)
PUBLISHED: dict[str, dict[str, tuple[float, float]]] = {
    "amazon-baby": {
        "bpr": (0.0575, 0.0249),
        "lightgcn": (0.0754, 0.0328),
        "vbpr": (0.0663, 0.0284),
        "lattice": (0.0850, 0.0370),
        "bm3": (0.0883, 0.0383),
        "freedom": (0.0992, 0.0424),
        "smore": (0.1035, 0.0457),
    },
    "amazon-sports": {
        "bpr": (0.0653, 0.0298),
        "lightgcn": (0.0864, 0.0387),
        "vbpr": (0.0856, 0.0384),
        "lattice": (0.0953, 0.0421),
        "bm3": (0.0980, 0.0438),
        "freedom": (0.1089, 0.0481),
        "smore": (0.1142, 0.0506),
    },
    "tiktok": {
        "bpr": (0.0346, 0.0130),
        "lightgcn": (0.0653, 0.0282),
        "vbpr": (0.0380, 0.0134),
        "lattice": (0.0843, 0.0367),
        "bm3": (0.0957, 0.0404),
        "diffmm": (0.1129, 0.0456),
    },
}
SOURCES: dict[str, str] = {
    "amazon-baby": MMREC_SOURCE,
    "amazon-sports": MMREC_SOURCE,
    "tiktok": DIFFMM_SOURCE,
}


def published_for(dataset: str, split: str) -> tuple[dict[str, tuple[float, float]], str | None]:
    """(model -> (recall@20, ndcg@20), source) that apply to this split: none but the official one's."""
    if split != "official":
        return {}, None
    return PUBLISHED.get(dataset, {}), SOURCES.get(dataset)
