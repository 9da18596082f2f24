"""Facets: typed slots on parameters, nodes and edges, filled by passes, shown by `summary --json`."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Literal

import pytest

import nndsl
from nndsl import facets
from nndsl.facets import Facet, attach
from nndsl.facets.layout import Layout
from nndsl.ir import IR


def test_every_parameter_has_a_dense_layout_that_counts_its_bytes():
    ir = nndsl.check("examples/resnet18.nn").ir
    n = 0
    for node in ir.nodes():
        for p in node.params:
            lay = p.facets["layout"]
            assert lay.kind == "dense" and lay.stored == p.numel and lay.density == 1.0
            assert lay.bytes == p.numel * (8 if p.dtype == "int64" else 4)
            n += 1
    assert n > 100


def test_attach_checks_the_slot_and_the_holder():
    ir = nndsl.check("examples/mlp.nn").ir
    node = next(n for n in ir.nodes() if n.params)
    with pytest.raises(TypeError, match="goes on param"):
        attach(node, Layout(stored=1, bytes=4))                 # a layout is a parameter's, not a node's

    class Stray(Facet):                                         # no slot: not a registered facet
        x: int = 0
    with pytest.raises(TypeError, match="not a registered facet"):
        attach(node.params[0], Stray())
    with pytest.raises(ValueError, match="declared twice"):
        class Layout2(Facet, slot="layout", on=("param",)):
            pass
    with pytest.raises(ValueError, match="must name some of"):
        class Nowhere(Facet, slot="nowhere_test", on=("graph",)):
            pass


def test_a_new_facet_is_one_class_and_the_pass_that_fills_it():
    """What docs/architecture.md shows: declare the facet, attach it from a pass, read it back."""
    class Note(Facet, slot="note_test", on=("node", "edge")):
        text: str
        level: Literal["info", "warn"] = "info"

    try:
        ir = nndsl.check("examples/mlp.nn").ir
        for node in ir.nodes():
            attach(node, Note(text=f"{node.op} with {len(node.params)} tensors"))
        for _u, _v, e in ir.g.edges(data="attr"):
            attach(e, Note(text="wire", level="warn"))
        back = IR.from_json(ir.to_json())
        assert [n.facets["note_test"].text for n in back.nodes()] == [n.facets["note_test"].text for n in ir.nodes()]
        assert all(e.facets["note_test"].level == "warn" for _u, _v, e in back.g.edges(data="attr"))
        # facet dicts are per holder, never shared
        first = next(iter(ir.nodes()))
        assert len({id(n.facets) for n in ir.nodes()}) == len(ir)
        first.facets.pop("note_test")
        assert all("note_test" in n.facets for n in list(ir.nodes())[1:])
    finally:
        facets.FACETS.pop("note_test", None)


def test_the_recipe_survives_the_json_round_trip():
    ir = nndsl.check("examples/gpt2_small.nn").ir
    back = IR.from_json(ir.to_json())
    for a, b in zip(ir.nodes(), back.nodes()):
        assert (a.recipe is None) == (b.recipe is None)
        if a.recipe is not None:
            assert a.recipe.sig == b.recipe.sig and a.recipe.fan == b.recipe.fan
        for p, q in zip(a.params, b.params):
            assert p.faces == q.faces and p.facets == q.facets and (p.fan_in, p.fan_out) == (q.fan_in, q.fan_out)


def test_summary_json_shows_parameter_facets_and_axis_names():
    r = subprocess.run([sys.executable, "-m", "nndsl", "summary", "examples/gpt2_small.nn", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    layers = {row["name"]: row for row in data["layers"]}
    fc = layers["logits.h.0.mlp.fc"]
    w = next(p for p in fc["parameters"] if p["name"] == "weight")
    assert w["shape"] == [3072, 768] and (w["fan_in"], w["fan_out"]) == (768, 3072)
    assert w["facets"]["layout"] == {"kind": "dense", "stored": 3072 * 768, "bytes": 4 * 3072 * 768, "density": 1.0,
                                     "of": "", "dense_shape": []}
    assert fc["axes"] == [["B", "T", "fc"]]
    (head,) = layers["logits.lm_head"]["parameters"]
    assert head["tied_to"] == "logits.wte.weight" and layers["logits.lm_head"]["params"] == 0
