"""The early-warning chart in docs/benchmarks.md, drawn from the benchmark results.

    .venv/bin/python benchmarks/plot_early_warning.py     # -> docs/img/early_warning.png

ROC-AUC of each renewal decision's ranking 30 to 270 days before it (both books pooled,
decisions observed at every lead, 95% bootstrap intervals): the current LightGBM
(renewal risk) and its health score (results/early_warning.csv), the old 90-day
LightGBM (results/early_warning_baseline.csv), a 0/1 flag ranking annual terms first,
the ceiling (the generator's p_churn) and 90% of it (the goal at 3-12 months).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "docs" / "img" / "early_warning.png"


def main_rows(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path, dtype={"seed": str, "lead_days": str})
    rows = table.loc[(table["seed"] == "all") & (table["decisions"] == "every_lead") & (table["cycle"] == "all")
                     & table["lead_days"].str.isdigit()]
    return rows.assign(lead_days=rows["lead_days"].astype(int)).sort_values("lead_days")


def main() -> None:
    new, old = main_rows(HERE / "results" / "early_warning.csv"), main_rows(HERE / "results" / "early_warning_baseline.csv")
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    series = ((new, "lightgbm", "LightGBM, renewal risk (now)", "tab:blue", "o", -4),
              (new, "lightgbm_health", "health score (now)", "tab:cyan", "s", 4),
              (old, "lightgbm", "LightGBM, 90-day churn (baseline)", "tab:red", "v", 0),
              (new, "ceiling", "ceiling: generator's p_churn", "black", "", 0))
    for rows, model, label, color, marker, shift in series:
        x = rows["lead_days"] + shift
        y = rows[f"{model}_roc_auc"]
        err = [y - rows[f"{model}_roc_lo"], rows[f"{model}_roc_hi"] - y]
        style = "--" if model == "ceiling" else "-"
        ax.errorbar(x, y, yerr=err, label=label, color=color, marker=marker or None, linestyle=style,
                    capsize=3, linewidth=1.5)
    ax.plot(new["lead_days"], new["annual_first_roc_auc"], color="tab:olive", linestyle="-.", linewidth=1,
            label="billing cycle alone (annual terms first)")
    ceiling = new.loc[new["lead_days"] > 30, "ceiling_roc_auc"].mean()
    ax.axhline(0.9 * ceiling, color="gray", linestyle=":", linewidth=1)
    ax.text(272, 0.9 * ceiling - 0.035, "goal: 90% of the ceiling", ha="right", color="gray", fontsize=8)
    ax.axhline(0.5, color="lightgray", linewidth=1)
    ax.set_xticks([30, 90, 180, 270])
    ax.set_xlabel("days before the renewal decision")
    ax.set_ylabel("ROC-AUC (both books, 95% bootstrap)")
    ax.set_ylim(0.2, 1.0)
    ax.set_title("Ranking renewal decisions ahead of time")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
