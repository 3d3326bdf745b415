"""One configuration, layered: packaged defaults < user TOML file < environment < CLI flags."""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

ENV_PREFIX = "VITRINA_"


class ConfigError(ValueError):
    """A setting that does not exist or cannot be parsed."""


def parse_scalar(text: str) -> Any:
    """Parse an override value as a TOML scalar, falling back to the raw string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _merge(base: dict[str, Any], over: dict[str, Any], where: str) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, f"{where}{key}.")
        else:
            base[key] = value


def _set_path(tree: dict[str, Any], dotted: str, value: Any, known: dict[str, Any]) -> None:
    parts = dotted.split(".")
    node, ref = tree, known
    for i, part in enumerate(parts[:-1]):
        # Model tables may gain new keys; other sections must exist in the defaults.
        if not isinstance(ref, dict) or (part not in ref and parts[0] != "models"):
            raise ConfigError(f"unknown setting '{dotted}'")
        ref = ref.get(part, {})
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"'{'.'.join(parts[: i + 1])}' is a value, not a section")
    leaf = parts[-1]
    if parts[0] != "models" and (not isinstance(ref, dict) or leaf not in ref):
        raise ConfigError(f"unknown setting '{dotted}'")
    node[leaf] = value


def load_defaults() -> dict[str, Any]:
    text = resources.files("vitrina").joinpath("defaults.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


@dataclass
class Config:
    """Resolved settings plus helpers that turn them into concrete paths."""

    data: dict[str, Any]
    sources: list[str] = field(default_factory=list)

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        overrides: dict[str, Any] | None = None,
        environ: dict[str, str] | None = None,
    ) -> Config:
        defaults = load_defaults()
        data = copy.deepcopy(defaults)
        sources = ["defaults"]
        env = os.environ if environ is None else environ
        user_file = (
            path or env.get(f"{ENV_PREFIX}CONFIG") or ("vitrina.toml" if Path("vitrina.toml").is_file() else None)
        )
        if user_file:
            p = Path(user_file)
            if not p.is_file():
                raise ConfigError(f"config file not found: {p}")
            try:
                _merge(data, tomllib.loads(p.read_text(encoding="utf-8")), "")
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{p}: {exc}") from exc
            sources.append(str(p))
        for key, raw in sorted(env.items()):
            if key.startswith(ENV_PREFIX) and "__" in key:
                dotted = key[len(ENV_PREFIX) :].lower().replace("__", ".")
                _set_path(data, dotted, parse_scalar(raw), defaults)
                sources.append(f"${key}")
        for dotted, value in (overrides or {}).items():
            _set_path(data, dotted, parse_scalar(value) if isinstance(value, str) else value, defaults)
            sources.append(f"--set {dotted}")
        return cls(data, sources)

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """A copy with some settings replaced (a command's own option for a config key)."""
        data, defaults = copy.deepcopy(self.data), load_defaults()
        for dotted, value in overrides.items():
            _set_path(data, dotted, value, defaults)
        return Config(data, [*self.sources, *(f"option {k}" for k in overrides)])

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def section(self, dotted: str, allowed: set[str] | frozenset[str]) -> dict[str, Any]:
        """A settings table as a dict; a key outside `allowed` is named in the error (typos fail loudly)."""
        table = dict(self.get(dotted, {}) or {})
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(f'{dotted}.{k}' for k in unknown)}")
        return table

    @property
    def data_dir(self) -> Path:
        configured = self.get("paths.data_dir")
        if configured:
            return Path(configured).expanduser()
        shared = Path("..") / "shared" / "data"
        return shared if shared.is_dir() else Path("data")

    @property
    def cache_dir(self) -> Path:
        path = Path(self.get("paths.cache_dir")).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def output_dir(self) -> Path:
        return Path(self.get("paths.output_dir")).expanduser()

    @property
    def storage_url(self) -> str:
        return str(self.get("storage.url"))

    @property
    def seed(self) -> int:
        return int(self.get("train.seed"))

    def model_params(self, name: str) -> dict[str, Any]:
        return dict(self.get(f"models.{name}", {}) or {})
