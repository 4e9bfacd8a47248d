"""Pipeline stage: write the simulated demo book to a data folder.

The data goes to ``out`` in the contract's format (events as Parquet, the rest as
CSV, marketing as CSV.gz, so every supported format is exercised). The simulator's
ground truth goes *outside* the data folder, to ``truth_dir``, so the pipeline can
never read it by accident.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from healthscore.contract import REQUIRED_SOURCES, SOURCES
from healthscore.errors import HealthscoreError
from healthscore.simulate import DemoBook, SimulationConfig, simulate_book
from pipelines.io import atomic_dir, write_table

FORMATS = {"events": ".parquet", "marketing": ".csv.gz"}
DEFAULT_FORMAT = ".csv"
MARKER = ".healthscore-demo"


def default_truth_dir(out: Path) -> Path:
    """``data/demo`` -> ``data/demo-truth``."""
    return out.with_name(f"{out.name}-truth")


def write_demo_data(
    out: Path,
    config: SimulationConfig,
    truth_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    minimal: bool = False,
) -> DemoBook:
    """Simulate a book and write it atomically (each folder appears complete or not at all).

    ``minimal``: write only what the contract requires (see :func:`contract_minimal`).
    """
    truth_dir = truth_dir or default_truth_dir(out)
    for folder in (out, truth_dir):
        # The folder is replaced whole: never wipe one that holds someone's own files.
        if folder.exists() and any(folder.iterdir()) and not (folder / MARKER).exists():
            raise HealthscoreError(
                f"{folder}: exists and is not a healthscore demo folder; "
                "refusing to overwrite it (choose another --out or remove it)"
            )
    book = simulate_book(config, progress=progress)
    if minimal:
        book = DemoBook(contract_minimal(book.sources), book.truth)
    with atomic_dir(out) as tmp:
        (tmp / MARKER).write_text(f"seed={config.seed} accounts={config.n_accounts}\n")
        for name, table in book.sources.items():
            if progress:
                progress(f"writing {name}")
            write_table(table, tmp / f"{name}{FORMATS.get(name, DEFAULT_FORMAT)}", source=name)
    with atomic_dir(truth_dir) as tmp:
        (tmp / MARKER).write_text(f"seed={config.seed} accounts={config.n_accounts}\n")
        for name, table in book.truth.items():
            write_table(table, tmp / f"{name}.parquet")
    return book


def contract_minimal(sources: dict) -> dict:
    """Only the required sources, each with only its required columns: the least a
    book may hold and still follow the contract.

    >>> import pandas as pd
    >>> tables = {"events": pd.DataFrame(columns=["account_id", "timestamp", "event", "count"]),
    ...           "tickets": pd.DataFrame(columns=["account_id", "created_at"])}
    >>> {name: list(t.columns) for name, t in contract_minimal(tables).items()}
    {'events': ['account_id', 'timestamp', 'event']}
    """
    return {name: table[SOURCES[name].required_columns] for name, table in sources.items()
            if name in REQUIRED_SOURCES}
