"""The command line end to end on a small generated dataset in the MMRec file format."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synthetic import clustered_dataset
from vitrina.cli import app

runner = CliRunner()


@pytest.fixture()
def env(tmp_path: Path, shop_db_url) -> dict[str, str]:
    """A data folder holding a tiny 'tiktok'-format dataset (ids 0..n-1, official split)."""
    raw = clustered_dataset(n_users=120, n_items=60, per_user=10)
    inter = raw.interactions.copy()
    inter["userID"] = inter["user_id"].str[1:]
    inter["itemID"] = inter["item_id"].str[1:]
    rng = np.random.default_rng(0)
    inter["split"] = rng.choice(["train", "train", "train", "train", "train", "train", "valid", "test"], len(inter))
    folder = tmp_path / "data" / "tiktok"
    folder.mkdir(parents=True)
    inter[["userID", "itemID", "split"]].to_csv(folder / "interactions.tsv", sep="\t", index=False)
    feats = rng.random((60, 8)).astype(np.float16)
    np.save(folder / "image_feat.npy", feats)
    np.save(folder / "audio_feat.npy", feats)
    return {
        "VITRINA_PATHS__DATA_DIR": str(tmp_path / "data"),
        "VITRINA_PATHS__CACHE_DIR": str(tmp_path / "cache"),
        "VITRINA_PATHS__OUTPUT_DIR": str(tmp_path / "out"),
        "VITRINA_STORAGE__URL": shop_db_url(tmp_path / "shop.db"),
        "VITRINA_TRAIN__MAX_EPOCHS": "3",
    }


def invoke(env: dict[str, str], *args: str):
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["config"],
        ["datasets"],
        ["datasets", "list"],
        ["datasets", "stats"],
        ["ingest"],
        ["import"],
        ["train"],
        ["recommend"],
        ["bench"],
        ["bench", "rec"],
        ["demo"],
        ["keys"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "revoke"],
        ["audit"],
        ["privacy", "release"],
        ["privacy", "budget"],
        ["privacy", "export"],
        ["privacy", "forget"],
        ["privacy", "rotate-key"],
        ["bench", "federated"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_bench_rec_writes_the_documented_json(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = invoke(
        env,
        "bench",
        "rec",
        "--dataset",
        "tiktok",
        "--models",
        "pop,bpr",
        "--seeds",
        "2",
        "--out",
        str(out),
        "-p",
        "bpr.learning_rate=0.01",
    )
    assert "| bpr | 2 |" in result.output and "0.0346 / 0.0130" in result.output  # DiffMM table
    payload = json.loads(out.read_text())
    assert payload["dataset"] == "tiktok"
    runs = payload["results"]
    assert [(r["model"], r["seed"]) for r in runs] == [
        ("pop", 2026),
        ("bpr", 2026),
        ("pop", 2027),
        ("bpr", 2027),
    ]
    for r in runs:
        assert {"recall@10", "recall@20", "ndcg@10", "ndcg@20", "auc", "coverage@50", "diversity@20"} <= set(r["test"])
        assert {"valid", "epochs", "train_seconds", "eval_seconds", "peak_rss_mb"} <= set(r)
    assert runs[1]["params"]["learning_rate"] == 0.01


def test_train_save_and_recommend(env: dict[str, str], tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    invoke(env, "train", "--dataset", "tiktok", "--model", "itemknn", "--out", str(model_dir))
    lines = invoke(env, "recommend", str(model_dir), "7", "-k", "3").output.strip().splitlines()
    assert len(lines) == 3 and all(len(line.split("\t")) == 2 for line in lines)
    bad = runner.invoke(app, ["recommend", str(model_dir), "no-such-user"], env=env)
    assert bad.exit_code == 2 and "unknown user 'no-such-user'" in bad.output


def test_ingest_then_train_from_database(env: dict[str, str], tmp_path: Path) -> None:
    first = json.loads(invoke(env, "ingest", "tiktok").output)
    again = json.loads(invoke(env, "ingest", "tiktok").output)
    assert first["now_in_database"] == again["now_in_database"]
    assert again["added"]["interactions"] == 0
    invoke(
        env,
        "--set",
        "split.default=random",
        "train",
        "--from-db",
        "--model",
        "pop",
        "--out",
        str(tmp_path / "p"),
    )


def test_bad_override_is_a_clear_error(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["--set", "train.nope=1", "config"], env=env)
    assert result.exit_code == 2 and "unknown setting 'train.nope'" in result.output


def test_bench_speed_times_evaluation_and_epochs(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    result = invoke(
        env, "bench", "speed", "--dataset", "tiktok", "--models", "bpr", "--repeats", "2", "--out", str(out)
    )
    assert "full evaluation, top-50, all metrics" in result.output
    rows = json.loads(out.read_text())["results"]
    assert [r["task"] for r in rows] == ["full evaluation, top-50, all metrics", "bpr training epoch"]
    assert all(len(r["runs_s"]) == 2 and r["median_s"] > 0 for r in rows)


def test_bench_grid_selects_on_validation_only(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "grid.json"
    result = invoke(
        env,
        "bench",
        "rec",
        "--dataset",
        "tiktok",
        "--models",
        "bpr",
        "--out",
        str(out),
        "-p",
        "bpr.learning_rate=0.0001,0.02",
        "-p",
        "bpr.embedding_dim=8",
    )
    runs = json.loads(out.read_text())["results"]
    assert sorted(r["params"]["learning_rate"] for r in runs) == [0.0001, 0.02]
    assert [r["selected"] for r in runs].count(True) == 1
    chosen = next(r for r in runs if r["selected"])
    assert chosen["valid"]["recall@20"] == max(r["valid"]["recall@20"] for r in runs)
    assert "selected on validation" in result.output and "| bpr | 1 |" in result.output


def test_bench_report_merges_files_and_plots(env: dict[str, str], tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    invoke(env, "bench", "rec", "--dataset", "tiktok", "--models", "pop", "--out", str(first))
    invoke(env, "bench", "rec", "--dataset", "tiktok", "--models", "itemknn", "--out", str(second))
    png = tmp_path / "r.png"
    out = invoke(env, "bench", "report", str(first), str(second), "--plot", str(png)).output
    assert "| pop | 1 |" in out and "| itemknn | 1 |" in out and "### tiktok (official split)" in out
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bench_report_selects_across_files_on_validation(env: dict[str, str], tmp_path: Path) -> None:
    files = []
    for lr in ("0.0001", "0.02"):
        files.append(tmp_path / f"bpr-{lr}.json")
        invoke(
            env,
            "bench",
            "rec",
            "--dataset",
            "tiktok",
            "--models",
            "bpr",
            "-p",
            f"bpr.learning_rate={lr}",
            "--out",
            str(files[-1]),
        )
    from vitrina.bench.report import load_runs

    runs = load_runs(files)[("tiktok", "official")]
    assert len(runs) == 2 and sum(r.selected for r in runs) == 1
    best = max(runs, key=lambda r: r.valid["recall@20"])
    assert best.selected
    assert invoke(env, "bench", "report", *map(str, files)).output.count("| bpr | 1 |") == 1


def test_bench_rec_ablation_over_modalities_and_cold_items(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "ablation.json"
    result = invoke(
        env,
        "bench",
        "rec",
        "--dataset",
        "tiktok",
        "--models",
        "vbpr,content-knn",
        "--ablation",
        "--out",
        str(out),
        "-p",
        "vbpr.modalities=image+audio,image",
    )
    payload = json.loads(out.read_text())
    assert payload["snapshot"]["modalities"] == ["audio", "image"]
    runs = {r["label"]: r for r in payload["results"]}
    assert runs["vbpr modalities=image"]["params"]["modalities"] == ["image"]
    assert runs["vbpr modalities=image+audio"]["params"]["modalities"] == ["image", "audio"]
    assert all(r["selected"] and r["peak_rss_mb"] > 0 and r["seconds_per_epoch"] > 0 for r in runs.values())
    assert "| vbpr modalities=image |" in result.output and "| content-knn |" in result.output
    assert "s/epoch" in result.output and "peak MB" in result.output
    report = invoke(env, "bench", "report", str(out)).output  # every ablation row survives the merge
    assert "| vbpr modalities=image |" in report and "| vbpr modalities=image+audio |" in report

    cold = tmp_path / "cold.json"
    invoke(
        env,
        "bench",
        "rec",
        "--dataset",
        "tiktok",
        "--models",
        "content-knn,bpr",
        "--split",
        "cold-item",
        "--out",
        str(cold),
    )
    payload = json.loads(cold.read_text())
    n_cold = round(0.1 * 60)  # split.ratios: 10% of the items held out for test
    for run in payload["results"]:  # users rank the held-out test items only
        assert 0 < run["test"]["coverage@20"] <= n_cold / 60 + 1e-9
    assert payload["split"] == "cold-item"
    assert payload["published"] == {} and payload["published_source"] is None  # official-split numbers only


def test_bench_rec_unknown_model_is_a_clear_error(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["bench", "rec", "--dataset", "tiktok", "--models", "vbpr,nope"], env=env)
    assert result.exit_code != 0 and "unknown model(s) nope" in result.output


def test_sequential_models_also_report_the_with_history_protocol(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "seq.json"
    invoke(
        env,
        "bench",
        "rec",
        "--dataset",
        "tiktok",
        "--models",
        "sasrec",
        "-p",
        "sasrec.embedding_dim=8",
        "--out",
        str(out),
    )
    run = json.loads(out.read_text())["results"][0]
    assert set(run["test_with_valid_history"]) >= {"recall@20", "ndcg@20"}


def test_keys_create_list_revoke_and_audit(env: dict[str, str]) -> None:
    made = json.loads(invoke(env, "keys", "create", "--role", "analyst", "--name", "alice").stdout.splitlines()[0])
    assert made["key"].startswith(f"vk_{made['key_id']}_")
    listed = [json.loads(line) for line in invoke(env, "keys", "list").stdout.splitlines()]
    assert [k["key_id"] for k in listed] == [made["key_id"]] and "key" not in listed[0]
    invoke(env, "keys", "revoke", made["key_id"])
    assert invoke(env, "keys", "list", "--no-revoked").stdout.strip() == ""
    bad = runner.invoke(app, ["keys", "create", "--role", "root", "--name", "x"], env=env)
    assert bad.exit_code == 2 and "unknown role" in bad.output
    trail = [json.loads(line) for line in invoke(env, "audit", "--action", "keys").stdout.splitlines()]
    assert [t["target"].split()[1] for t in trail] == ["revoke", "create"]


def test_privacy_release_charges_the_budget_until_it_refuses(env: dict[str, str]) -> None:
    invoke(env, "ingest", "tiktok")
    budget = ["--set", "privacy.epsilon_budget=1.5"]
    first = invoke(env, *budget, "privacy", "release", "--epsilon", "1", "--top", "3", "--seed", "0")
    rows = [line.split("\t") for line in first.stdout.splitlines() if "\t" in line]
    assert len(rows) == 3 and all(float(count) > 0 for _, count in rows)
    refused = runner.invoke(app, [*budget, "privacy", "release", "--epsilon", "1"], env=env)
    assert refused.exit_code == 2 and "spent ε=1 of 1.5" in refused.output
    spent = json.loads(invoke(env, *budget, "privacy", "budget").stdout)
    assert spent["epsilon"] == 1.0 and spent["epsilon_budget"] == 1.5


def test_privacy_export_and_forget_a_shopper(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("item_id,title\ni1,red dress\ni2,blue shirt\n")
    (tmp_path / "users.csv").write_text("user_id,email\nana@shop,ana@example.com\n")
    (tmp_path / "events.csv").write_text(
        "user_id,item_id,type,ts\nana@shop,i1,view,1700000000\nana@shop,i2,cart,1700000100\n"
    )
    invoke(
        env,
        "import",
        "--items",
        str(tmp_path / "items.csv"),
        "--users",
        str(tmp_path / "users.csv"),
        "--events",
        str(tmp_path / "events.csv"),
    )
    found = json.loads(invoke(env, "privacy", "export", "--user", "ana@shop").stdout)
    assert found["profile"]["email"] == "ana@example.com" and len(found["events"]) == 2
    assert found["user_id"].startswith("p_") and "ana@shop" not in json.dumps(found["events"])
    report = json.loads(invoke(env, "privacy", "forget", "--user", "ana@shop").stdout)
    assert report["database"] is True
    again = runner.invoke(app, ["privacy", "export", "--user", "ana@shop"], env=env)
    assert again.exit_code == 2 and "unknown user" in again.output
    rotated = json.loads(invoke(env, "privacy", "rotate-key", "--retire").stdout)
    assert rotated["key_version"] == 2 and rotated["retired"] == [1]


def test_bench_federated_compares_with_central_training(env: dict[str, str], tmp_path: Path) -> None:
    """Flower simulation end to end: a grid (plain FedAvg, then with server-side clipping and noise)
    selected on validation, bytes per round measured on the messages (the item matrix each way per
    client), the central row beside."""
    out = tmp_path / "fed.json"
    env = {**env, "VITRINA_PRIVACY__FEDERATED__CLIENTS": "2", "VITRINA_PRIVACY__FEDERATED__MAX_ROUNDS": "3"}
    grid = "federated.noise_multiplier=0,0.5"
    png = tmp_path / "fed.png"
    result = invoke(env, "bench", "federated", "--dataset", "tiktok", "-p", grid, "--out", str(out), "--plot", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| central | 1 |" in result.output and "+ DP noise 0.5, clip 1 | 2 |" in result.output
    payload = json.loads(out.read_text())
    rows = payload["federated"]
    assert [r["settings"]["noise_multiplier"] for r in rows] == [0, 0.5] and sum(r["selected"] for r in rows) == 1
    best = max(rows, key=lambda r: r["valid"]["recall@20"])
    assert best["selected"] and all(r["rounds"] == 3 for r in rows)
    item_bytes = 60 * 64 * 4  # items × [models.bpr] embedding_dim × float32, to and from 2 clients
    for r in rows:
        assert all(4 * item_bytes <= h["bytes_down"] + h["bytes_up"] < 4 * (item_bytes + 1024) for h in r["history"])
    assert payload["central"]["upload_bytes"] == payload["snapshot"]["train"] * 8
    assert payload["central"]["test"]["users"] == best["test"]["users"]


def test_bench_federated_unknown_setting_is_a_clear_error(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["bench", "federated", "--dataset", "tiktok", "-p", "federated.rounds=3"], env=env)
    assert result.exit_code == 2 and "unknown federated setting(s) rounds" in result.output


def test_train_on_ray_saves_a_model_that_loads(env: dict[str, str], tmp_path: Path, ray_local: None) -> None:
    from vitrina.models import Recommender

    out = tmp_path / "model"
    result = invoke(env, "train", "--model", "bpr", "--dataset", "tiktok", "--ray", "local", "--out", str(out))
    report = json.loads(result.output[result.output.index("{") :])
    assert report["saved"] == str(out) and report["test"]["recall@20"] >= 0
    model = Recommender.load(out)
    assert model.report.history[0]["workers"] == 2  # [distributed] workers shared every epoch
    refused = runner.invoke(app, ["train", "--model", "sasrec", "--dataset", "tiktok", "--ray", "local"], env=env)
    assert refused.exit_code == 2 and "BPR family" in refused.output
