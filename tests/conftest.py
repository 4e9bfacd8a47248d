"""Shared fixtures: tiny, hand-checkable data folders in the contract's format."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

# Test workers share the two cores, and LightGBM's OpenMP threads spin while they wait
# for work: two workers fitting at once then ran a backtest 7 times slower (217 s against
# 31 s). Waiting threads sleep instead. Set before anything loads the OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# CI runs a fixed set of examples (no flaky landings); `HYPOTHESIS_PROFILE=deep` explores.
# 30 a property: each example of the contract fuzz validates a whole folder (about 0.5 s),
# and the fast suite keeps to about 5 minutes on 2 cores.
settings.register_profile("default", max_examples=30)
settings.register_profile("ci", max_examples=30, derandomize=True)
settings.register_profile("deep", max_examples=3000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))

@pytest.fixture(autouse=True)
def _own_metric_store(tmp_path_factory, monkeypatch):
    """Commands run without --store use a store of this test's own (never the default
    outputs/store.duckdb of the folder the tests run in)."""
    monkeypatch.setenv("HEALTHSCORE_STORE", str(tmp_path_factory.mktemp("store") / "store.duckdb"))


# Three accounts, every source, every value valid. Tests break one thing at a time.
VALID_FOLDER: dict[str, str] = {
    "accounts.csv": """account_id,created_at,name,segment,industry,csm
a1,2024-01-01,Acme Corp,Enterprise,Retail,Dana
a2,2024-01-15,Beta LLC,SMB,Software,
a3,2024-02-01,Gamma Inc,Mid-Market,Health,Lee
""",
    "subscriptions.csv": """subscription_id,account_id,start_date,end_date,arr,plan,seats,status
s1,a1,2024-01-01,2025-01-01,120000,Business annual,100,renewed
s2,a1,2025-01-01,2026-01-01,126000,Business annual,105,
s3,a2,2024-01-15,2024-02-15,1200,Team monthly,5,
s4,a2,2024-02-15,2024-03-15,1200,Team monthly,5,
s5,a3,2024-02-01,2025-02-01,40000,Business annual,30,
""",
    "events.csv": """account_id,timestamp,event,user_id,count,value
a1,2024-03-01T09:15:00,login,u1,1,
a1,2024-03-01T09:20:00,deal_closed,u1,2,1500.5
a2,2024-03-02T10:00:00+02:00,login,u7,3,
a3,2024-03-03,login,u9,1,
""",
    "tickets.csv": """ticket_id,account_id,created_at,resolved_at,priority,csat
t1,a1,2024-03-01T10:00:00,2024-03-02T10:00:00,high,4
t2,a2,2024-03-05T08:00:00,,urgent,
""",
    "surveys.csv": """account_id,responded_at,kind,score,user_id
a1,2024-03-10T12:00:00,nps,9,u1
a3,2024-03-11T12:00:00,csat,2,u9
""",
    "onboarding.csv": """account_id,milestone,completed_at
a1,kickoff,2024-01-03T10:00:00
a1,go_live,2024-02-01T10:00:00
""",
    "invoices.csv": """invoice_id,account_id,issued_at,due_at,amount,paid_at
i1,a1,2024-01-01,2024-01-31,120000,2024-01-20
i2,a2,2024-02-15,2024-03-16,100,
""",
    "csm_notes.csv": """account_id,recorded_at,sentiment,note
a1,2024-03-15T16:00:00,8,"Happy, expanding to a second team"
""",
    "marketing.csv": """account_id,timestamp,kind,user_id
a1,2024-03-04T11:00:00,webinar,u1
""",
    "account_metrics.csv": """account_id,as_of_date,integrations_connected,api_error_rate
a1,2024-03-03,4,0.01
a1,2024-03-10,5,
""",
}


@pytest.fixture
def data_folder(tmp_path: Path) -> Callable[..., Path]:
    """Write the valid folder with some files replaced (text) or removed (None)."""

    def make(**changes: str | bytes | None) -> Path:
        folder = tmp_path / "data"
        folder.mkdir(exist_ok=True)
        files = dict(VALID_FOLDER)
        for key, content in changes.items():
            name = key.replace("__", ".")  # events__csv__gz -> events.csv.gz
            if "." not in name:
                name += ".csv"
            files.pop(name, None)
            if content is not None:
                files[name] = content
        for name, content in files.items():
            path = folder / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return folder

    return make


@pytest.fixture(scope="session")
def scoring_book(tmp_path_factory):
    """A 300-account demo book with a fitted model registered as champion in its own MLflow
    store (``root/mlflow.db``), and one hostile account name. Shared by the scoring and
    report tests; each module points MLFLOW_TRACKING_URI at the store for its duration.

    Returns (root, data folder, the data's last day).
    """
    import mlflow
    import pandas as pd

    from healthscore.config import Config
    from healthscore.simulate import SimulationConfig
    from models.training import fit_final
    from pipelines import registry
    from pipelines.demo_data import write_demo_data
    from pipelines.train import build_observations

    config = Config()
    root = tmp_path_factory.mktemp("scoring-book")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    data = root / "demo"
    write_demo_data(data, SimulationConfig(n_accounts=300, seed=3))
    # Hostile names on accounts that are customers at the end, so they are scored.
    accounts = pd.read_csv(data / "accounts.csv")
    terms = pd.read_csv(data / "subscriptions.csv", parse_dates=["start_date", "end_date"])
    live = terms.loc[terms["end_date"] > terms["end_date"].max() - pd.Timedelta(days=60), "account_id"]
    first, second = accounts.index[accounts["account_id"].isin(set(live))][:2]
    accounts.loc[first, "name"] = '=HYPERLINK("http://evil.example","click")'
    accounts.loc[second, "name"] = "<script>alert(1)</script>"
    accounts.to_csv(data / "accounts.csv", index=False)
    training = build_observations(data, None, config, lambda m: None)
    known, as_of = training.known, training.as_of
    model = fit_final(known, config.model, training.catalog, current=training.current)[0]
    registry.connect(config.model.experiment)
    with mlflow.start_run():
        logged = registry.log_model(model, 90, {}, known.tail(50))
    version = registry.register(logged.model_uri, "healthscore", {})
    registry.promote("healthscore", version, "test", "test")
    mp.undo()
    return root, data, as_of


@pytest.fixture(scope="module")
def scoring_store(scoring_book):
    """The shared scoring book with MLflow pointed at its store for one test module.

    Yields (root, data folder, the data's last day as a date)."""
    import pandas as pd

    root, data, as_of = scoring_book
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    yield root, data, pd.Timestamp(as_of).date()
    mp.undo()
