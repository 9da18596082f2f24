from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Triton kernels run in its interpreter on CPU tensors; it is read when the kernels are compiled, so it is
# set before anything imports them. Models take the torch path unless a test asks for Triton.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("NNDSL_KERNELS", "torch")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
UI = Path(__file__).resolve().parent / "ui"
sys.path.insert(0, str(ROOT / "benchmarks"))


def ui_render(name: str) -> str:
    """What nndsl reports for tests/ui/<name>.nn, rendered without colour, paths relative to tests/ui."""
    import shlex

    from nndsl.backends.torch_codegen import generate
    from nndsl.compiler import check
    from nndsl.diagnostics import Abort, render_all

    path = UI / f"{name}.nn"
    first = path.read_text().splitlines()[0]
    args = shlex.split(first[len("# args:"):]) if first.startswith("# args:") else []
    dims = {}
    for i, a in enumerate(args):
        if a == "--dim":
            k, v = args[i + 1].split("=", 1)
            dims[k] = v
    cwd = os.getcwd()
    os.chdir(UI)
    try:
        res = check(f"{name}.nn", dims=dims, signal="--signal" in args)
        diags = list(res.diagnostics)
        if res.ok and "compile" in args:
            try:
                generate(res.ir)
            except Abort as e:
                diags.append(e.diagnostic)
        return render_all(diags, res.sources, color=False)
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="session")
def torch():
    import torch as t

    return t
