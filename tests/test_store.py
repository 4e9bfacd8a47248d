"""The metric store: incremental runs equal a rebuild from scratch, bit for bit.

A book the demo simulator did not write (``tests/books.py``) is exported week after
week the way a CRM or warehouse export grows: new weeks appended, rows that arrive late
(stamped before the last run), edited rows and deleted rows, and a metric config that
changes. After every step the store that saw every step must hold exactly what a fresh
store computes from the same final files.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pandas as pd
import pytest

from features.engine import PEAK_DAYS, snapshot_dates
from healthscore.config import Config
from healthscore.contract import SOURCES
from healthscore.errors import DataContractError
from pipelines import store as metric_store
from tests.books import foreign_book, minimal, write_book

EVERY = 7


def _dates(as_of: dt.date, first: dt.date, weeks: int = 3) -> tuple[list[dt.date], list[dt.date]]:
    """A short scoring-like history (the last ``weeks`` snapshots) and its peak dates."""
    snaps = snapshot_dates(as_of, first, EVERY, EVERY * (weeks - 1))
    peaks = snapshot_dates(as_of, first, EVERY, EVERY * (weeks - 1) + PEAK_DAYS)
    return snaps, peaks


def _known(book: dict[str, pd.DataFrame], cutoff: pd.Timestamp,
           held_back: dict[str, set]) -> dict[str, pd.DataFrame]:
    """What an export taken at ``cutoff`` holds: rows dated up to it, minus late rows."""
    out = {}
    for name, table in book.items():
        column = SOURCES[name].date_column
        keep = pd.to_datetime(table[column]) < cutoff + pd.Timedelta(days=1)
        keep &= ~table.index.isin(held_back.get(name, set()))
        out[name] = table.loc[keep]
    return out


def _run(path: Path, data: Path, as_of: dt.date, first: dt.date, config: Config,
         dates: list[dt.date] | None = None, said: list[str] | None = None) -> pd.DataFrame:
    snaps, peaks = _dates(as_of, first)
    if dates is not None:  # the rebuild: every date the incremental store holds
        snaps = dates
        peaks = sorted({p for d in dates for p in snapshot_dates(d, first, EVERY, PEAK_DAYS)})
    with metric_store.opened(path, config) as store:
        store.sync(data, said.append if said is not None else None)
        store.ensure(snaps, peaks)
        return store.read_history()


def _assert_same(incremental: pd.DataFrame, rebuilt: pd.DataFrame) -> None:
    assert len(incremental) > 0
    pd.testing.assert_frame_equal(incremental.reset_index(drop=True),
                                  rebuilt[incremental.columns].reset_index(drop=True),
                                  check_exact=True)


def _edit(book: dict[str, pd.DataFrame], known: dict[str, pd.DataFrame], rng: random.Random) -> str:
    """Change one already exported row: an event's name or count, a ticket's priority,
    a term's ARR, or delete an event; returns what was done."""
    kind = rng.choice(["event", "count", "delete", "arr", "ticket"])
    if kind == "arr":
        row = rng.choice(list(known["subscriptions"].index))
        book["subscriptions"].loc[row, "arr"] = float(book["subscriptions"].loc[row, "arr"]) + 1000.0
        return f"arr of term {row}"
    if kind == "ticket" and "tickets" in book and len(known["tickets"]):
        row = rng.choice(list(known["tickets"].index))
        book["tickets"].loc[row, "priority"] = "urgent"
        return f"priority of ticket {row}"
    row = rng.choice(list(known["events"].index))
    if kind == "delete":
        book["events"] = book["events"].drop(index=row)
        return f"deleted event {row}"
    if kind == "count" and "count" in book["events"]:
        book["events"].loc[row, "count"] = int(book["events"].loc[row, "count"]) + 5
        return f"count of event {row}"
    book["events"].loc[row, "event"] = "quiz_submit"
    return f"name of event {row}"


@pytest.mark.parametrize("seed,shape,fmt", [(0, "full", "csv"), (1, "minimal", "parquet"),
                                            pytest.param(2, "full", "parquet", marks=pytest.mark.slow)])
def test_incremental_runs_equal_a_rebuild(tmp_path: Path, seed: int, shape: str, fmt: str) -> None:
    """One export folder rewritten week after week (as a scheduled export does), so
    the store reads only the changed days of the files that changed."""
    rng = random.Random(seed)
    book = foreign_book(accounts=24, days=460, seed=seed)
    if shape == "minimal":
        book = minimal(book)
    # Late rows: a few usage and support rows reach the export only weeks after their day.
    held_back = {name: set(rng.sample(list(book[name].index), k=max(1, len(book[name]) // 50)))
                 for name in ("events", "tickets") if name in book}
    first = min(pd.to_datetime(book["subscriptions"]["start_date"]).min(),
                pd.to_datetime(book["events"]["timestamp"]).min()).date()
    config = Config()
    cutoff = pd.Timestamp(first) + pd.Timedelta(days=400)
    store = tmp_path / "incremental.duckdb"
    steps, said = [], []
    for step in range(6):
        action = "start" if step == 0 else rng.choice(["append", "append", "late", "edit", "touch"])
        if action == "append":
            cutoff += pd.Timedelta(days=EVERY)
        elif action == "late":
            for name in held_back:
                release = rng.sample(sorted(held_back[name]), k=len(held_back[name]) // 2 or 1)
                held_back[name] -= set(release)
        elif action == "edit":
            action += ": " + _edit(book, _known(book, cutoff, held_back), rng)
        steps.append(action)
        data = write_book(_known(book, cutoff, held_back), tmp_path / "export", fmt)
        if action == "touch":  # the same content, new files: nothing to recompute
            data = write_book(_known(book, cutoff, held_back), tmp_path / "export", fmt)
        incremental = _run(store, data, cutoff.date(), first, config, said=said)
        dates = sorted(incremental["as_of_date"].dt.date.unique())
        rebuilt = _run(tmp_path / f"fresh-{step}.duckdb", data, cutoff.date(), first, config, dates)
        try:
            _assert_same(incremental, rebuilt)
        except AssertionError as exc:
            raise AssertionError(f"after steps {steps}: {exc}") from None
    # The runs after the first read only the changed days of the usage file.
    assert "events: the changed days read" in said, (steps, said)


def test_a_changed_metric_config_rebuilds(tmp_path: Path) -> None:
    book = foreign_book(accounts=12, days=420, seed=4)
    data = write_book(book, tmp_path / "book")
    first = pd.to_datetime(book["subscriptions"]["start_date"]).min().date()
    as_of = first + dt.timedelta(days=410)
    path = tmp_path / "store.duckdb"
    before = _run(path, data, as_of, first, Config())
    changed = Config.model_validate({"metrics": {"key_features": ["lesson_view"]}})
    after = _run(path, data, as_of, first, changed)
    assert "key_feature_lesson_view_adoption_30d" in after.columns
    assert "key_feature_lesson_view_adoption_30d" not in before.columns
    _assert_same(after, _run(tmp_path / "fresh.duckdb", data, as_of, first, changed,
                             sorted(after["as_of_date"].dt.date.unique())))


def test_a_failed_run_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    book = foreign_book(accounts=10, days=420, seed=5)
    data = write_book(book, tmp_path / "book")
    first = pd.to_datetime(book["subscriptions"]["start_date"]).min().date()
    as_of = first + dt.timedelta(days=410)
    path = tmp_path / "store.duckdb"
    before = _run(path, data, as_of, first, Config())
    book["events"].loc[book["events"].index[:50], "count"] += 1
    write_book(book, data)
    with pytest.raises(RuntimeError, match="boom"):
        with metric_store.opened(path, Config()) as store:
            assert store.sync(data).changed_keys["events"] > 0
            store.ensure(*_dates(as_of, first))
            raise RuntimeError("boom")
    with metric_store.opened(path, Config()) as store:
        pd.testing.assert_frame_equal(store.read_history(), before)


def _problems(stores: list[Path], data: Path, as_of: dt.date, first: dt.date) -> list[str]:
    """The contract error a run on each store raises."""
    problems = []
    for store_path in stores:
        with pytest.raises(DataContractError) as caught:
            _run(store_path, data, as_of, first, Config())
        problems.append(str(caught.value))
    return problems


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_broken_change_is_worded_as_a_whole_validation_words_it(tmp_path: Path, fmt: str) -> None:
    """A run that reads only the changed days finds the same problems, in the same words,
    as a fresh store that validates every file whole: a new ticket repeating an old
    ticket's id (the repeat is among rows that were not read again), a count that is not
    a number; and the store is left as it was."""
    book = foreign_book(accounts=12, days=420, seed=5)
    data = write_book(book, tmp_path / "export", fmt)
    first = pd.to_datetime(book["subscriptions"]["start_date"]).min().date()
    as_of = first + dt.timedelta(days=410)
    path = tmp_path / "store.duckdb"
    before = _run(path, data, as_of, first, Config())
    tickets, events = book["tickets"], book["events"]
    repeat = tickets.iloc[[-1]].assign(ticket_id=tickets["ticket_id"].iloc[0])
    book["tickets"] = pd.concat([tickets, repeat], ignore_index=True)
    write_book(book, data, fmt)
    problems = _problems([path, tmp_path / "fresh.duckdb"], data, as_of, first)
    assert "ticket_id" in problems[0] and "repeats" in problems[0]
    assert problems[0] == problems[1]
    if fmt == "csv":  # a value that is not a number, in a row of the last day
        book["tickets"] = tickets
        events = events.astype({"count": object})
        events.loc[events.index[-1], "count"] = "lots"
        book["events"] = events
        write_book(book, data, fmt)
        problems = _problems([path, tmp_path / "fresh2.duckdb"], data, as_of, first)
        assert "lots" in problems[0] and problems[0] == problems[1]
    with metric_store.opened(path, Config()) as store:
        pd.testing.assert_frame_equal(store.read_history(), before)


def test_a_history_computed_in_batches_equals_one_computed_at_once(tmp_path: Path, monkeypatch) -> None:
    """A long history is computed a few dates at a time (memory then depends on the
    accounts, not on the history's length); the rows are the same, bit for bit."""
    book = foreign_book(accounts=12, days=420, seed=6)
    data = write_book(book, tmp_path / "book")
    first = pd.to_datetime(book["subscriptions"]["start_date"]).min().date()
    as_of = first + dt.timedelta(days=410)
    dates = snapshot_dates(as_of, first, EVERY, 6 * EVERY)
    peaks = snapshot_dates(as_of, first, EVERY, 6 * EVERY + PEAK_DAYS)
    assert len(dates) == 7 and len(peaks) > 50
    whole = _run(tmp_path / "whole.duckdb", data, as_of, first, Config(), dates)
    said = []
    # 12 accounts: the 7 dates in batches of 2, the peaks' dates in batches of about 16.
    monkeypatch.setattr(metric_store, "BATCH_ROWS", 30)
    monkeypatch.setattr(metric_store, "PEAK_BATCH_ROWS", 200)
    with metric_store.opened(tmp_path / "batched.duckdb", Config()) as store:
        store.sync(data)
        store.ensure(dates, peaks, said.append)
        batched = store.read_history()
    assert any(m.startswith("computing usage peaks") and "batch 2 of" in m for m in said), said
    assert any(m.startswith("computing the metrics") and "batch 4 of 4" in m for m in said), said
    _assert_same(batched, whole)
