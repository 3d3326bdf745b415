"""`[serve]` in the config: the service, its training job and its online blending."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ServeSettings"]


@dataclass(frozen=True)
class ServeSettings:
    """See defaults.toml's [serve] for what each setting does."""

    dir: Path = Path(".cache/vitrina/serve")
    media_root: Path | None = None
    model: str = "lightgcn"
    split: str = "leave-last-out"
    keep_versions: int = 3
    joint_dim: int = 128
    modality_weights: dict[str, float] = field(default_factory=lambda: {"text": 1.0, "image": 1.0, "audio": 0.5})
    recent_events: int = 20
    recency_decay: float = 0.85
    session_weight: float = 0.5
    content_weight: float = 0.5
    refresh_s: float = 1.0
    ads_sync_s: float = 10.0
    precompute_k: int = 100
    redis_url: str = ""
    sentiment_model: Path | None = None
    sentiment_weight: float = 0.1
    max_body_bytes: int = 1_000_000
    require_keys: bool = False
    rate_per_min: int = 6000
    key_cache_s: float = 5.0
    shop_front_key: str = ""
    cors_origins: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2

    def __post_init__(self) -> None:
        for name in ("session_weight", "content_weight", "recency_decay"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"serve.{name} must be within [0, 1], got {value}")
        if self.rate_per_min < 1:
            raise ValueError(f"serve.rate_per_min must be at least 1, got {self.rate_per_min}")
        if self.recent_events < 1 or self.workers < 1 or self.joint_dim < 1:
            raise ValueError("serve.recent_events, serve.workers and serve.joint_dim must be at least 1")

    @classmethod
    def from_config(cls, cfg: Any) -> ServeSettings:
        section = cfg.section("serve", set(cls.__dataclass_fields__))
        section["dir"] = Path(section.get("dir") or cfg.cache_dir / "serve")
        section["media_root"] = Path(section["media_root"]) if section.get("media_root") else None
        section["sentiment_model"] = Path(section["sentiment_model"]) if section.get("sentiment_model") else None
        section["cors_origins"] = tuple(str(o) for o in section.get("cors_origins", ()))
        if "modality_weights" in section:
            section["modality_weights"] = {str(k): float(v) for k, v in section["modality_weights"].items()}
        return cls(**section)
