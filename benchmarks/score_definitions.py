"""Which health score means the same for every account? Three definitions, one backtest.

Reproduces the band tables behind the score's definition in docs/model.md:

    .venv/bin/python benchmarks/score_definitions.py

For each book: build the metric history, label the observations with outcomes known at
the end of the data, and walk forward over the reported folds with the default model (the blend).
Each fold's model scores its test rows three ways:

* ``per_renewal``: the risk at the next renewal without the distance to it (the score
  before issue #24), on a scale anchored on the mean per-renewal churn;
* ``per_year``: the same risk over a year of renewals (:func:`models.health.yearly_log_odds`),
  anchored on the median training row (the product's score since #24);
* ``relative_to_term``: the yearly risk relative to the training rows of the same term
  length (its log-odds minus the median of its term's, plus the overall median).

Then churn per account-year by band (:mod:`models.band_churn`: churned renewal decisions
per account-year of the terms decided), pooled and within each term length, and the
problems :func:`models.band_churn.ranking_problems` finds. The books:
demo books of seeds 7 and 13 (400 accounts, two years) and a book of the test generator
(``tests/books.py``: 900 accounts, 800 days, half monthly and half annual), whole and cut
to the contract's required columns. Results go to
benchmarks/results/score_definitions.csv.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.catalog import available_columns, catalog
from healthscore.config import Config
from healthscore.simulate import SimulationConfig, simulate_book
from models.backtest import fold_plan, evaluable, walk_forward
from models.blend import TREES_ONLY
from models.band_churn import band_churn, ranking_problems, term_kind
from models.health import HealthScale
from models.observations import decision_weights, label_all
from models.renewal import TERM_LENGTH, health_log_odds
from models.training import lightgbm
from models.churn_model import feature_columns
from pipelines.features import compute_metric_history
from pipelines.validate import load_data_folder

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def _fitter(config: Config, metric_catalog):
    m = config.model

    def fit(train: pd.DataFrame):
        features = feature_columns(train)
        model = lightgbm(m, metric_catalog, blend_weights=m.blend_weights or TREES_ONLY).fit(
            train[features], train["churned"], train["label_known_at"], decision_weights(train))
        old_scale = HealthScale(float(train["churned"].mean()))
        yearly_train = model.health_log_odds(train[features])
        kinds = term_kind(train[TERM_LENGTH])
        medians = pd.Series(yearly_train).groupby(kinds).median()
        overall = float(np.median(yearly_train))

        def risk(t):
            return model.renewal_risk(t[features])

        def variant(score):
            def f(t):
                return risk(t)
            f.health_score = score
            return f

        def per_renewal(t):
            return old_scale.score(health_log_odds(model.contributions(t[features])))

        def relative(t):
            yearly = model.health_log_odds(t[features])
            shift = pd.Series(term_kind(t[TERM_LENGTH])).map(medians).fillna(overall).to_numpy()
            return model.scale_.score(yearly - shift + overall)

        return {"per_renewal": variant(per_renewal),
                "per_year": variant(lambda t: model.health_score(t[features])),
                "relative_to_term": variant(relative)}
    return fit


def run(name: str, tables: dict[str, pd.DataFrame], own: tuple[str, ...], config: Config) -> list[dict]:
    as_of = tables["events"]["timestamp"].max().normalize()
    history = compute_metric_history(tables, as_of.date(), config)
    m = config.model
    observations = label_all(history, tables["subscriptions"], as_of, config.grace_days,
                             m.horizon_days, m.lead_days)
    folds, _ = fold_plan(evaluable(observations), m.folds, m.fold_days, m.tuning_folds)
    metric_catalog = catalog(config.metrics, available_columns(tables), own)
    predictions = walk_forward(observations, folds, {"lightgbm": _fitter(config, metric_catalog)},
                               None, m.horizon_days, m.lead_days)
    rows = []
    for definition, part in predictions.groupby("model"):
        table = band_churn(part)
        problems = ranking_problems(table)
        print(f"{name} {definition}: {'; '.join(problems) or 'the bands rank churn'}")
        for r in table.to_dict("records"):
            rows.append({"book": name, "definition": definition, **r, "problems": len(problems)})
    return rows


def main() -> None:
    from books import foreign_book, minimal, write_book

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "score_definitions.csv")
    args = parser.parse_args()
    config = Config()
    rows = []
    started = time.time()
    for seed in (7, 13):
        book = simulate_book(SimulationConfig(seed=seed))
        own = tuple(c for c in book.sources["account_metrics"].columns
                    if c not in ("account_id", "as_of_date"))
        rows += run(f"demo seed {seed}", book.sources, own, config)
    mixed = foreign_book(accounts=900, days=800, seed=21, annual_share=0.5)
    with tempfile.TemporaryDirectory() as tmp:
        for name, book in (("mixed terms", mixed), ("mixed terms, contract-minimal", minimal(mixed))):
            tables = load_data_folder(write_book(book, Path(tmp) / name.replace(" ", "_")))
            rows += run(name, tables, (), config)
    table = pd.DataFrame(rows)
    table.to_csv(args.out, index=False, float_format="%.4f")
    print(f"wrote {args.out} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
