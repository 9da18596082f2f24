"""The worked examples of docs/architecture.md run as written: an op added with one `register` call
and a facet added with one class and its pass work through the whole pipeline."""
from __future__ import annotations

import re
from pathlib import Path

import torch

import nndsl
from nndsl import facets
from nndsl import ops as O

DOC = Path(__file__).resolve().parent.parent.joinpath("docs", "architecture.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", DOC, re.S)


def _run(code: str) -> dict:
    env: dict = {}
    head = ("from typing import Literal\nfrom nndsl.dims import Dim\nfrom nndsl.ir import IR\n"
            "from nndsl.facets import Facet, attach\nfrom nndsl.recipe import *\nfrom nndsl.ops.registry import *\n")
    exec(compile(head + code, "docs/architecture.md", "exec", dont_inherit=True), env)
    return env


def test_the_bilinear_op_of_the_doc_works_end_to_end():
    from test_ops import test_recipe_keeps_the_promises_of_the_traits, CASES
    from test_axes import _check_follows_signatures

    O.all_names()
    _run(BLOCKS[0])
    src = """model M {
  input a: [B, 5]
  input b: [B, 3]
  output y = bilinear(a, b, 7)
}
"""
    try:
        res = nndsl.check(source=src)
        assert res.ok, [d.message for d in res.diagnostics]
        node = next(n for n in res.ir.nodes() if n.op == "bilinear")
        assert node.params[0].shape == (7, 5, 3) and node.recipe.fan == (15, 7)
        _check_follows_signatures(res.ir)
        m = nndsl.load(source=src, seed=0)
        a, b = torch.randn(4, 5), torch.randn(4, 3)
        want = torch.einsum("bi,oij,bj->bo", a, m.y.weight, b)
        assert torch.allclose(m(a, b), want, atol=1e-5)
        CASES["bilinear"] = ("bilinear(x, y, 7)", {"x": [2, 5], "y": [2, 3]})
        test_recipe_keeps_the_promises_of_the_traits("bilinear")
    finally:
        O.OPS.pop("bilinear", None)
        CASES.pop("bilinear", None)


def test_the_precision_facet_of_the_doc_works_end_to_end():
    env = _run("from nndsl import ops as O\n" + BLOCKS[1])
    try:
        ir = nndsl.check("examples/resnet18.nn").ir
        env["fill_precision"](ir)
        dtypes = {n.op: p.facets["precision"].dtype for n in ir.nodes() for p in n.params}
        assert dtypes["conv2d"] == "bfloat16" and dtypes["batchnorm2d"] == "float32"
        assert ir.to_json().count('"precision"') > 100
    finally:
        facets.FACETS.pop("precision", None)
