"""The cost curves in docs/benchmarks.md, drawn from the benchmark results.

    .venv/bin/python benchmarks/plot_scale.py     # -> docs/img/scale.png

Left: the metric history's wall time and peak memory over events, with accounts
growing alongside (benchmarks/results/scale.csv: copies of the 12.6M-event book, and
the events series of metric_history.csv). Right: over accounts at about 3M events
(the accounts series of metric_history.csv).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "docs" / "img" / "scale.png"


def main() -> None:
    scale = pd.read_csv(HERE / "results" / "scale.csv")
    history = pd.read_csv(HERE / "results" / "metric_history.csv")
    history = history.loc[(history["step"] == "engine") & (history["status"] == "ok")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for step, label, color in (("engine", "healthscore engine (every metric), DuckDB", "tab:blue"),
                               ("plain", "plain DuckDB SQL, 4 core usage metrics", "tab:gray"),
                               ("spark", "healthscore engine on Spark local[2]", "tab:orange")):
        rows = scale.loc[(scale["step"] == step) & (scale["status"] == "ok")].sort_values("events")
        if len(rows):
            left.plot(rows["events"] / 1e6, rows["wall_s"], marker="o", color=color, label=label)
    small = history.loc[history["series"] == "events"].groupby("events")["wall_s"].median()
    left.plot(small.index / 1e6, small.to_numpy(), marker="s", linestyle=":", color="tab:blue",
              label="engine, demo books of 320-3,200 accounts")
    left.set(xlabel="usage events (millions; accounts grow with them)", ylabel="wall time (s)",
             title="Metric history over events, 2 cores (DuckDB cap 1.3 GB; 126M: 4 GB)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    # The accounts series proper: about 3M events however many accounts hold them.
    fixed = history.loc[(history["series"] == "accounts") & (history["events"] < 4e6)]
    accounts = fixed.groupby("accounts")["wall_s"].median()
    right.plot(accounts.index, accounts.to_numpy(), marker="o", color="tab:blue")
    right.set(xlabel="accounts (about 3M events in each book)", ylabel="wall time (s)",
              title="Metric history over accounts, events fixed")
    right.set_ylim(bottom=0)
    right.grid(alpha=0.3)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
