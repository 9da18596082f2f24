"""One UI test per diagnostic code: tests/ui/<CODE>.nn and the exact rendering in <CODE>.stderr.
Regenerate after an intended change with NNDSL_BLESS=1 (and read the diff)."""
from __future__ import annotations

import os

import pytest

from conftest import UI, ui_render
from nndsl.diagnostics import CODES, Diagnostic, render

UI_CODES = sorted(p.stem for p in UI.glob("*.nn"))


# Codes about the command's own output files have no .nn to show; tests/test_trust.py renders each.
CLI_CODES = {"E0401", "E0402", "E0403", "E0404", "E0405", "E0406"}  # E0404: test_init.py (lsuv); E0405:
# test_sparsity.py (project); E0406: test_export.py


def test_every_code_has_a_ui_test():
    missing = [c for c in CODES if c not in UI_CODES and c != "E9999" and c not in CLI_CODES]
    assert not missing, f"diagnostic codes without a UI test: {missing}"


@pytest.mark.parametrize("code", UI_CODES)
def test_ui_rendering(code):
    got = ui_render(code)
    expected_path = UI / f"{code}.stderr"
    if os.environ.get("NNDSL_BLESS"):
        expected_path.write_text(got)
    want = code.split("_")[0]  # E0001_several.nn shows several E0001s
    assert f"[{want}]" in got, f"{code}.nn does not produce {want}:\n{got}"
    assert got == expected_path.read_text()


def test_internal_error_rendering():
    # E9999 cannot be produced by any input (that would be a bug); its rendering is still fixed.
    d = Diagnostic(code="E9999", message="internal compiler error: KeyError: 'x'", notes=["at elaborate.py:1"],
                   help="this is a bug in nndsl; please report it with the spec")
    assert render(d, {}) == (
        "error[E9999]: internal compiler error: KeyError: 'x'\n"
        "  = note: at elaborate.py:1\n"
        "  = help: this is a bug in nndsl; please report it with the spec\n")
