"""Layered configuration: defaults < file < environment < flags, with clear errors."""

from pathlib import Path

import pytest

from vitrina.config import Config, ConfigError, load_defaults


def test_defaults_are_documented_and_complete() -> None:
    d = load_defaults()
    assert d["train"]["patience"] == 20
    assert d["eval"]["watch"] == "recall@20"
    assert d["storage"]["url"].startswith("sqlite:///")
    for model in ("pop", "itemknn", "als", "bpr", "lightgcn"):
        assert model in d["models"]


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "v.toml"
    f.write_text("[train]\nseed = 5\npatience = 7\n[models.bpr]\nreg_weight = 0.5\n")
    cfg = Config.load(f, environ={})
    assert (cfg.seed, cfg.get("train.patience"), cfg.model_params("bpr")["reg_weight"]) == (5, 7, 0.5)
    env = {"VITRINA_TRAIN__SEED": "11", "VITRINA_STORAGE__URL": "postgresql://x@h/db"}
    cfg = Config.load(f, environ=env)
    assert cfg.seed == 11 and cfg.storage_url == "postgresql://x@h/db" and cfg.get("train.patience") == 7
    cfg = Config.load(f, {"train.seed": "12", "models.bpr.embedding_dim": "32"}, environ=env)
    assert cfg.seed == 12 and cfg.model_params("bpr")["embedding_dim"] == 32
    assert cfg.sources == [
        "defaults",
        str(f),
        "$VITRINA_STORAGE__URL",
        "$VITRINA_TRAIN__SEED",
        "--set train.seed",
        "--set models.bpr.embedding_dim",
    ]


def test_config_file_from_environment(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[paths]\ndata_dir = "/somewhere"\n')
    assert Config.load(environ={"VITRINA_CONFIG": str(f)}).data_dir == Path("/somewhere")


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown setting 'train.sed'"):
        Config.load(overrides={"train.sed": "1"}, environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        Config.load(tmp_path / "missing.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        Config.load(bad, environ={})


def test_data_dir_defaults_to_shared_data_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert Config.load(environ={}).data_dir == Path("../shared/data")
    monkeypatch.chdir(tmp_path)
    assert Config.load(environ={}).data_dir == Path("data")


def test_with_overrides_copies_and_checks_keys() -> None:
    cfg = Config.load(None, environ={})
    other = cfg.with_overrides({"distributed.ray_address": "local"})
    assert other.get("distributed.ray_address") == "local" and cfg.get("distributed.ray_address") == ""
    with pytest.raises(ConfigError):
        cfg.with_overrides({"distributed.adress": "x"})
