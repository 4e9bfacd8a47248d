"""The ``healthscore`` command line.

Thin wiring only: parse options, call a pipeline stage, show the result. Errors a
user can act on (:class:`HealthscoreError`) become a short message and a non-zero
exit; anything else is reported as an internal error (set ``HEALTHSCORE_DEBUG=1``
for the traceback).

Exit codes: 0 success; 1 the data has row-level anomalies that will be dropped
(``validate`` only); 2 the input or options are wrong; 3 command not built yet;
70 internal error.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from healthscore import __version__
from healthscore.contract import DROP, ERROR, SOURCES
from healthscore.errors import HealthscoreError

app = typer.Typer(
    name="healthscore",
    help="Churn-predictive customer health scores for B2B SaaS customer-success teams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
for _console in (out, err):
    if not _console.is_terminal and "COLUMNS" not in os.environ:
        _console.width = 120  # logs and pipes: wide enough that tables keep file names whole

F = TypeVar("F", bound=Callable[..., object])

EXIT_DROPS, EXIT_USER, EXIT_NOT_BUILT, EXIT_ALERT, EXIT_INTERNAL = 1, 2, 3, 4, 70


def _friendly(func: F) -> F:
    """Turn exceptions into a clear message and exit code instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except HealthscoreError as exc:
            # Escaped: a message quotes user text and commands ("pip install -e '.[spark]'")
            # that rich would otherwise read as markup and drop.
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]: no output was written")
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 -- the last line of defence
            if os.environ.get("HEALTHSCORE_DEBUG"):
                raise
            err.print(
                f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
                "This is a bug in healthscore. Re-run with HEALTHSCORE_DEBUG=1 for the "
                "traceback and report it.",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


@contextlib.contextmanager
def _steps(title: str):
    """A progress display whose description each step updates (plain lines when piped)."""
    if err.is_terminal:
        with _progress() as progress:
            task = progress.add_task(title, total=None)
            yield lambda message: progress.update(task, description=f"{title}: {message}")
    else:
        yield lambda message: err.print(f"[dim]{title}:[/] {message}", highlight=False)


def _version(value: bool) -> None:
    if value:
        out.print(f"healthscore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Churn-predictive customer health scores for B2B SaaS customer-success teams."""


def _data_source(value: str | None) -> Path | str | None:
    """--data: a folder or DuckDB file (a path), or a database URL (kept as text)."""
    if value is None or "://" in value:
        return value
    return Path(value)


DataOpt = Annotated[
    str,
    typer.Option("--data", callback=_data_source,
                 help="Data folder with one file per source, a DuckDB file (*.duckdb), or a "
                      "database URL such as postgres://user@host/db (see docs/data-contract.md)."),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Config file (YAML).")]
StoreOpt = Annotated[Path | None, typer.Option(
    "--store", envvar="HEALTHSCORE_STORE",
    help="The metric store (a DuckDB file every command reads and keeps up to date) "
         "[default: outputs/store.duckdb].")]


def _store(value: Path | None) -> Path:
    from pipelines.store import store_path

    return store_path(value)
EngineOpt = Annotated[str | None, typer.Option(
    "--engine", help="Where the metrics are computed: duckdb or spark [default: engine.name of the config].")]
MasterOpt = Annotated[str | None, typer.Option(
    "--spark-master", help="Spark master URL, e.g. local[2] or spark://host:7077 [default: engine.spark_master].")]


def _with_engine(cfg, engine: str | None, master: str | None):
    """The config with --engine and --spark-master applied (checked by the config's rules).

    When the engine is Spark, checks that Spark can start here before any data is read.
    """
    from pydantic import ValidationError

    from healthscore.config import EngineConfig

    update = {k: v for k, v in (("name", engine), ("spark_master", master)) if v is not None}
    if update:
        try:
            checked = EngineConfig(**{**cfg.engine.model_dump(), **update})
        except ValidationError as exc:
            problem = exc.errors()[0]
            raise HealthscoreError(f"--{'engine' if problem['loc'][0] == 'name' else 'spark-master'} "
                                   f"{update.get(problem['loc'][0])!r}: {problem['msg']}") from None
        cfg = cfg.model_copy(update={"engine": checked})
    if cfg.engine.name == "spark":
        from pipelines.spark import require

        require()
    return cfg


@app.command("demo-data")
@_friendly
def demo_data(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the demo data to.")],
    accounts: Annotated[int, typer.Option("--accounts", min=10, help="Number of accounts.")] = 400,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same data.")] = 7,
    truth: Annotated[
        Path | None,
        typer.Option("--truth", help="Folder for the generator's ground truth [default: OUT-truth]."),
    ] = None,
    minimal: Annotated[bool, typer.Option(
        "--minimal", help="Write only the required sources and columns (a contract-minimal book).")] = False,
) -> None:
    """Write a realistic simulated book of B2B SaaS accounts in the data contract."""
    from healthscore.simulate import SimulationConfig
    from pipelines.demo_data import default_truth_dir, write_demo_data

    config = SimulationConfig(n_accounts=accounts, seed=seed)
    with _progress() as progress:
        task = progress.add_task("simulating", total=None)
        book = write_demo_data(
            out_dir, config, truth, progress=lambda s: progress.update(task, description=s),
            minimal=minimal,
        )
    table = Table(title=f"Demo data in {out_dir}", title_justify="left")
    table.add_column("source")
    table.add_column("rows", justify="right")
    for name, frame in book.sources.items():
        table.add_row(name, f"{len(frame):,}")
    out.print(table)
    out.print(
        f"Ground truth (renewal decisions and their probabilities) in "
        f"{truth or default_truth_dir(out_dir)}"
    )


@app.command()
@_friendly
def validate(
    data: DataOpt,
    grace_days: Annotated[
        int, typer.Option("--grace-days", min=0, help="Days a renewal may lag a term's end.")
    ] = 30,
    allow_drops: Annotated[
        bool,
        typer.Option("--allow-drops", help="Exit 0 when the only problems are rows that get dropped."),
    ] = False,
) -> None:
    """Check a data folder against the contract: rows, date range and problems per source."""
    from pipelines.validate import check_and_summarise

    with _progress() as progress:
        task = progress.add_task("reading", total=None)
        # DuckDB reads and checks the files; only accounts and subscriptions become pandas.
        validation, summary = check_and_summarise(
            data, grace_days, progress=lambda s: progress.update(task, description=f"checking {s}")
        )

    table = Table(title=f"Data folder {data}", title_justify="left")
    for column, justify in (("source", "left"), ("file", "left"), ("rows", "right"),
                            ("kept", "right"), ("from", "left"), ("to", "left"),
                            ("problems", "right")):
        # File names stay whole on a narrow terminal: the other columns give way.
        widest = max((len(r.file) for r in validation.reports.values()), default=4)
        table.add_column(column, justify=justify,  # type: ignore[arg-type]
                         min_width=widest if column == "file" else None, no_wrap=column == "file")
    for name in SOURCES:
        report = validation.reports.get(name)
        if report is None:
            state = "[red]missing[/]" if SOURCES[name].required else "[dim]absent (optional)[/]"
            table.add_row(name, state, "", "", "", "", "")
            continue
        date = lambda d: "" if d is None else d.date().isoformat()  # noqa: E731
        n = len(report.problems)
        table.add_row(
            name, report.file, f"{report.rows:,}",
            f"{report.kept_rows:,}" if validation.ok else "",
            date(report.date_min), date(report.date_max),
            f"[red]{n}[/]" if n else "0",
        )
    out.print(table)

    for severity, title in ((ERROR, "Errors (the data cannot be used as it is)"),
                            (DROP, "Rows that will be dropped")):
        problems = [p for p in validation.all_problems if p.severity == severity]
        if problems:
            out.print(f"\n[bold]{title}[/]")
            for problem in problems:
                out.print(f"  - {problem}", highlight=False, soft_wrap=True)

    if not validation.ok:
        err.print(f"[bold red]error:[/] {len(validation.errors)} contract error(s) in {data}")
        raise typer.Exit(EXIT_USER)
    if isinstance(summary, Exception):
        raise summary
    out.print(
        f"\nAs of {summary.as_of.date()} (last activity): {summary.accounts:,} accounts, "
        f"{summary.active:,} active. Renewal outcomes so far: {summary.renewed:,} renewed, "
        f"{summary.churned:,} churned ({summary.churned_by_status:,} by explicit status), "
        f"{summary.pending:,} pending within the {grace_days}-day grace period."
    )
    if validation.missing_optional:
        out.print(f"Optional sources absent: {', '.join(validation.missing_optional)}.")
    if validation.drops and not allow_drops:
        err.print(
            f"[yellow]warning:[/] {sum(p.count for p in validation.drops):,} row(s) break row "
            "rules and will be dropped by every pipeline command (exit 1; --allow-drops to accept)"
        )
        raise typer.Exit(EXIT_DROPS)
    out.print("[green]OK[/]: the data follows the contract.")


def _not_built(command: str, issue: int) -> None:
    err.print(f"[yellow]`healthscore {command}` is not built yet[/] (planned in issue #{issue}).")
    raise typer.Exit(EXIT_NOT_BUILT)


@app.command()
@_friendly
def features(
    data: DataOpt,
    out_file: Annotated[Path, typer.Option("--out", help="Metric history file (.parquet/.csv).")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Last snapshot date [default: last day in the data].")] = None,
    config: ConfigOpt = None,
    memory_limit: Annotated[str | None, typer.Option("--memory-limit", help="Cap DuckDB's memory (e.g. 2GB; default auto: half the physical memory, at most 2.5 GB); it spills to disk beyond it.")] = None,
    engine: EngineOpt = None,
    spark_master: MasterOpt = None,
    store: StoreOpt = None,
) -> None:
    """Build the point-in-time metric history (one row per account per snapshot)."""
    from pipelines.config import load_config
    from pipelines.features import build_features, parse_as_of

    cfg = _with_engine(load_config(config), engine, spark_master)
    with _steps("features") as step:
        step("validating and building the metric history")
        history = build_features(data, out_file, parse_as_of(as_of), cfg, memory_limit,
                                 progress=lambda line: out.print(line.capitalize(), highlight=False),
                                 store=_store(store))
    out.print(
        f"Metric history: {history['rows']:,} rows ({history['accounts']:,} accounts x "
        f"{history['dates']} snapshots, {history['first']:%Y-%m-%d} to {history['last']:%Y-%m-%d}), "
        f"{history['metrics']} metrics -> {out_file}"
    )


@app.command()
@_friendly
def catalog(
    config: ConfigOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
) -> None:
    """Print (or write) the metric catalog: name, meaning, unit, direction, source."""
    from features.catalog import catalog_markdown
    from pipelines.config import load_config
    from pipelines.io import atomic_path

    text = catalog_markdown(load_config(config).metrics)
    if out_file is None:
        print(text)
        return
    with atomic_path(out_file) as tmp:
        tmp.write_text(text, encoding="utf-8")
    out.print(f"Metric catalog -> {out_file}")


@app.command()
@_friendly
def train(
    data: DataOpt,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Learn from outcomes known by D [default: last day in the data].")] = None,
    horizon: Annotated[int | None, typer.Option("--horizon", help="Churn horizon in days [default: config, 90].")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Learn metric weights from renewal outcomes: backtest, fit, log to MLflow, register, gate."""
    from pipelines.config import load_config
    from pipelines.features import parse_as_of
    from pipelines.train import train as run_train

    cfg = load_config(config)
    if horizon is not None:
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"horizon_days": horizon})})
    with _steps("training") as step:
        result = run_train(data, parse_as_of(as_of), cfg, step, _store(store))
    for line in result.extra.get("not_built", []):
        out.print(f"Not built: {line}", highlight=False)
    for note in result.extra.get("notes", []):
        out.print(f"Backtest sized to the data: {note}", highlight=False)
    _print_backtest(result, cfg)
    weights = Table(title="Weights per category: hand-set vs learned")
    for column in ("category", "hand weight", "LightGBM (share of mean |SHAP|)", "logistic (share of |std. weight|)"):
        weights.add_column(column, justify="left" if column == "category" else "right")
    for row in result.weights.to_dict("records"):
        weights.add_row(row["category"], f"{row['hand_weight']:.0%}", f"{row['lightgbm_shap_share']:.0%}",
                        f"{row['logistic_weight_share']:.0%}")
    out.print(weights)
    out.print(f"MLflow run {result.run_id}; registered version {result.version} as challenger.")
    out.print(f"Gate: {result.reason}", highlight=False)


def _print_backtest(result, cfg) -> None:
    if result.pooled.empty:
        out.print(f"No out-of-time backtest ({result.observations:,} observations known by "
                  f"{result.as_of}, churn rate {result.churn_rate:.1%}): too little labelled "
                  "history; the model's quality is not measured yet.")
        return
    table = Table(title=f"Out-of-time backtest of the churn probability: churn within "
                        f"{cfg.model.horizon_days} days ({len(result.folds['fold'].unique())} folds; "
                        f"the model learned from {result.observations:,} observations with a renewal "
                        f"outcome known by {result.as_of}, {result.churn_rate:.1%} churned at it)")
    for column in ("model", "ROC-AUC", "PR-AUC", "Brier", "log loss", "top-decile lift",
                   f"precision@{cfg.model.capacity}", f"recall@{cfg.model.capacity}", "ECE"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in result.pooled.to_dict("records"):
        table.add_row(row["model"], *(f"{row[k]:.3f}" for k in (
            "roc_auc", "pr_auc", "brier", "log_loss", "top_decile_lift", "precision_at_capacity",
            "recall_at_capacity", "ece")))
    out.print(table)
    early = result.extra.get("early_warning")
    if early is not None and len(early):
        leads = sorted(early["lead_days"].unique())
        warning = Table(title="Early warning: ROC-AUC / PR-AUC of each renewal decision of the "
                              "backtest period, ranked that many days before it")
        warning.add_column("model")
        for lead in leads:
            first = early.loc[early["lead_days"] == lead].iloc[0]
            warning.add_column(f"{lead} d ({first['decisions']:,}, {first['churned']} churned)",
                               justify="right")
        for model, rows in early.groupby("model", sort=True):
            by = rows.set_index("lead_days")
            warning.add_row(model, *(f"{by.loc[l, 'roc_auc']:.3f} / {by.loc[l, 'pr_auc']:.3f}"
                                     if l in by.index else "–" for l in leads))
        out.print(warning)
    bands = result.extra.get("bands")
    if bands is not None and len(bands):
        _print_bands(bands)
    blend = result.extra.get("blend")
    if blend:
        out.print(f"The model blends the trees, the logistic regression and the scorecard "
                  f"{blend[0]:.2f} / {blend[1]:.2f} / {blend[2]:.2f} (model.blend_weights).",
                  highlight=False)
    check = result.extra.get("forecast_check")
    if check:
        out.print(f"Renewal forecast backtest: the ARR lost fell inside the 80% interval in "
                  f"{check['coverage']:.0%} of {check['months']} past months; forecast "
                  f"{check['expected_arr_lost']:,.0f} against {check['actual_arr_lost']:,.0f} lost.",
                  highlight=False)


def _print_bands(bands) -> None:
    """Churn per account-year by band, pooled and per term, and whether the bands rank it."""
    from models.band_churn import ranking_problems

    table = Table(title="Do the bands rank real churn? Churn per account-year by band in the "
                        "backtest (share of the group's observations)")
    order = list(dict.fromkeys(bands["band"]))
    table.add_column("accounts")
    for band in order:
        table.add_column(band, justify="right")
    for (view, group), rows in bands.loc[bands["view"] != "segment"].groupby(["view", "group"], sort=False):
        by = rows.set_index("band")
        table.add_row("all" if view == "pooled" else f"{group} terms",
                      *(f"{by.loc[b, 'churn_per_account_year']:.0%} ({by.loc[b, 'share']:.0%})"
                        if by.loc[b, "observations"] else "–" for b in order))
    out.print(table)
    problems = ranking_problems(bands)
    out.print("The bands rank churn, pooled and within every term." if not problems else
              "The bands do not rank churn everywhere: " + "; ".join(problems), highlight=False)


@app.command()
@_friendly
def tune(
    data: DataOpt,
    out_file: Annotated[Path, typer.Option("--out", help="Config file to write, with the best LightGBM parameters (YAML).")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Use outcomes known by D [default: last day in the data].")] = None,
    trials: Annotated[int, typer.Option("--trials", min=1, help="Trials to run.")] = 30,
    timeout: Annotated[float | None, typer.Option("--timeout", min=1, help="Stop after this many seconds.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Search LightGBM parameters with Optuna on the folds before the reported backtest."""
    from pipelines.config import load_config
    from pipelines.features import parse_as_of
    from pipelines.tune import tune as run_tune

    cfg = load_config(config)
    with _steps("tuning") as step:
        result = run_tune(data, parse_as_of(as_of), cfg, out_file, trials, timeout, step,
                          _store(store))
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in result.best_params.items())
    out.print(f"Best tuning-fold ROC-AUC {result.best_value:.4f} after {result.trials} trials "
              f"({result.pruned} pruned): {params}", highlight=False)
    out.print(f"Wrote {result.config_file}; train with it: healthscore train --config {result.config_file}")


@app.command()
@_friendly
def scorecard(
    data: DataOpt,
    out_file: Annotated[Path, typer.Option("--out", help="Scores file (.csv/.parquet).")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Score as of D [default: last day in the data].")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """The classic hand-weighted scorecard (usage 25%, NPS/CSAT 20%, ...): 0-100 and bands."""
    from pipelines.config import load_config
    from pipelines.features import parse_as_of
    from pipelines.scorecard import run_scorecard

    cfg = load_config(config)
    with _steps("scorecard") as step:
        step("building the metric history and scoring")
        scored = run_scorecard(data, parse_as_of(as_of), cfg, out_file, _store(store))
    counts = scored["band"].value_counts()
    bands = ", ".join(f"{name} {counts.get(name, 0)}" for name in ("Critical", "At-risk", "Healthy", "Thriving"))
    out.print(f"Hand-weighted scorecard for {len(scored):,} accounts: {bands} -> {out_file}", highlight=False)


@app.command()
@_friendly
def promote(
    version: Annotated[str, typer.Argument(help="Model version to make champion.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept on the version).")],
    config: ConfigOpt = None,
) -> None:
    """Make a registered model version the champion by hand, overriding the gate (recorded)."""
    import getpass

    from pipelines import registry
    from pipelines.config import load_config

    cfg = load_config(config)
    registry.connect(cfg.model.experiment)
    registry.promote(cfg.model.registered_model, version, reason, f"hand ({getpass.getuser()})")
    out.print(f"{cfg.model.registered_model} v{version} is now the champion ({reason}).")


@app.command()
@_friendly
def score(
    data: DataOpt,
    out_file: Annotated[Path, typer.Option("--out", help="Scores file: .csv (CRM-safe) or .parquet.")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Score as of this day [default: last day in the data].")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model URI [default: models:/healthscore@champion].")] = None,
    backfill: Annotated[int, typer.Option("--backfill", min=1, help="Score this many weekly runs ending as of D, oldest first (starts a score history).")] = 1,
    config: ConfigOpt = None,
    engine: EngineOpt = None,
    spark_master: MasterOpt = None,
    store: StoreOpt = None,
) -> None:
    """Score every account active as of D: health score, band, drivers and actions."""
    from pipelines.config import load_config
    from pipelines.features import parse_as_of
    from pipelines.score import backfill as run_backfill

    cfg = _with_engine(load_config(config), engine, spark_master)
    with _steps("scoring") as step:
        result = run_backfill(data, parse_as_of(as_of), cfg, out_file, backfill, model,
                              _store(store), step)
    scores = result.scores
    counts = scores["band"].value_counts()
    order = [b for b in ("Critical", "At-risk", "Healthy", "Thriving", "Requires attention",
                         "Take notice", "Doing well", "Monitor", "insufficient_data") if b in counts]
    table = Table(title=f"Health as of {scores['as_of_date'].iloc[0]:%Y-%m-%d} "
                        f"(model v{result.model_version}, {int(scores['horizon_days'].iloc[0])}-day churn)")
    for column in ("band", "accounts", "ARR", "mean churn probability"):
        table.add_column(column, justify="left" if column == "band" else "right")
    for band in order:
        rows = scores.loc[scores["band"] == band]
        table.add_row(band, f"{len(rows):,}", f"{rows['arr'].sum():,.0f}",
                      "-" if rows["churn_probability"].isna().all() else f"{rows['churn_probability'].mean():.1%}")
    out.print(table)
    young = int((scores["band"] == "insufficient_data").sum())
    if young:
        out.print(f"{young:,} of {len(scores):,} accounts held back as too new to score (tenure under "
                  f"{cfg.score.min_tenure_days} days: band insufficient_data, no probability)")
    from pipelines.outputs import alerts_path

    out.print(f"{len(result.alerts)} band change(s) held for {cfg.score.debounce_runs} runs -> "
              f"{alerts_path(out_file)}")
    out.print(f"Scores -> {out_file}; score history and alerts -> the metric store {result.store}")
    if result.monitor is not None:
        from pipelines.monitor import summary
        from pipelines.outputs import findings_path

        for line in summary(result.monitor):
            out.print(f"monitor: {line}", highlight=False)
        out.print(f"Monitoring -> {findings_path(out_file)}")


@app.command()
@_friendly
def monitor(
    data: DataOpt,
    out_file: Annotated[Path, typer.Option("--out", help="Findings file (JSON).")] = Path("monitor.json"),
    as_of: Annotated[str | None, typer.Option("--as-of", help="Check as of this day [default: last day in the data].")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model URI [default: models:/healthscore@champion].")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 4 when anything is flagged (for schedulers).")] = False,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Freshness, coverage, drift and realised performance of the score (also run by `score`)."""
    from pipelines.config import load_config
    from pipelines.features import parse_as_of
    from pipelines.monitor import run, summary

    cfg = load_config(config)
    with _steps("monitor") as step:
        findings = run(data, parse_as_of(as_of), cfg, out_file, model, _store(store), step)
    for line in summary(findings):
        out.print(line, highlight=False)
    out.print(f"Findings -> {out_file}")
    if strict and not findings["ok"]:
        raise typer.Exit(EXIT_ALERT)


@app.command()
@_friendly
def report(
    data: DataOpt,
    scores_file: Annotated[Path, typer.Option("--scores", help="The scores written by `score` (.csv or .parquet).")],
    out_file: Annotated[Path, typer.Option("--out", help="The HTML report to write.")],
    model: Annotated[str | None, typer.Option("--model", help="Model URI [default: the version that made the scores].")] = None,
    max_cards: Annotated[int, typer.Option("--max-cards", min=0, help="Health cards for at most this many accounts (the riskiest).")] = 5000,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """The portfolio report and account health cards: one self-contained HTML file."""
    from pipelines.config import load_config
    from pipelines.report import report as run_report

    cfg = load_config(config)
    with _steps("report") as step:
        result = run_report(scores_file, data, out_file, cfg, _store(store), model, max_cards, step)
    out.print(f"Report for {result.accounts:,} accounts ({result.cards:,} health cards) -> "
              f"{result.path.resolve().as_uri()}")


def _quiet_libraries() -> None:
    """MLflow logs database migrations and warns about cloudpickle on every run; our own
    output says what happened, and docs/model.md states the pickle trust boundary."""
    import logging
    import warnings

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*CloudPickle.*")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def main() -> None:
    """Console-script entry point."""
    _quiet_libraries()
    app(prog_name="healthscore")


@app.command("runs-url")
@_friendly
def runs_url(
    port: Annotated[int, typer.Option("--port", help="The MLflow UI's port.")] = 5000,
    host: Annotated[str, typer.Option("--host", help="The MLflow UI's host.")] = "127.0.0.1",
    config: ConfigOpt = None,
) -> None:
    """Print the MLflow UI links to the training and monitoring runs (`make mlflow-ui` shows them)."""
    from pipelines.config import load_config
    from pipelines.registry import runs_urls, tracking_uri

    cfg = load_config(config)
    training, monitoring = cfg.model.experiment, f"{cfg.model.experiment}-monitoring"
    urls = runs_urls(f"http://{host}:{port}", [training, monitoring])
    for label, name, command in (("Training runs", training, "train"),
                                 ("Monitoring runs", monitoring, "score")):
        text = urls[name] or (f"none yet (the store {tracking_uri()} has no experiment "
                              f"{name!r}: run `make {command}` first)")
        out.print(f"{label}: {escape(text)}", highlight=False, soft_wrap=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
