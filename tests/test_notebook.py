"""Jupyter: docs/nndsl.ipynb runs in a real kernel (nbclient); a check renders as HTML, a summary as a
table, a drawing as SVG; what a spec holds is escaped. The notebook is kept in git without outputs."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import nndsl

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "docs" / "nndsl.ipynb"


def test_the_notebook_is_stored_without_outputs():
    import nbformat

    nb = nbformat.read(NB, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz renders the drawing cell")
def test_the_notebook_runs_and_displays():
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NB, as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(NB.parent)}}).execute()
    outs = [c.outputs for c in nb.cells if c.cell_type == "code"]
    html = [o["data"]["text/html"] for o in outs[0] + outs[1] + outs[2] if "data" in o and "text/html" in o["data"]]
    assert "ok: model <b>DeepSets</b>" in html[0]
    assert "error[E0201]" in html[1] or "error[E0" in html[1]
    assert "<table" in html[2] and "phi" in html[2]
    assert any("image/svg+xml" in o.get("data", {}) for o in outs[3])
    assert outs[4][0]["text"].strip() == "True"


def test_what_a_spec_holds_is_escaped():
    r = nndsl.check(source='model M {\n  input x: [B, 4]\n  output y = linear(x, "<script>")\n}\n')
    html = r._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    s = nndsl.summary(source="model M {\n  input x: [B, 4]\n  output y = relu(linear(x, 8))\n}\n")
    assert "<table" in s._repr_html_() and "linear" in str(s) and s.totals["total_params"] == 40
