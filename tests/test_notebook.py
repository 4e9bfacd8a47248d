"""The walkthrough notebook: stored without outputs, and runs top to bottom."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
@pytest.mark.parametrize("minimal", ["0", "1"], ids=["full", "contract-minimal"])
def test_walkthrough_runs_top_to_bottom(tmp_path, monkeypatch, minimal):
    from nbclient import NotebookClient

    monkeypatch.setenv("HEALTHSCORE_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.setenv("HEALTHSCORE_NOTEBOOK_ACCOUNTS", "80")
    monkeypatch.setenv("HEALTHSCORE_NOTEBOOK_MINIMAL", minimal)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    assert (tmp_path / "report.html").is_file() and (tmp_path / "mlflow.db").is_file()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "model version 1: no champion yet: promoted" in text
    assert "Next:" in text  # the at-risk account's playbook action was printed
