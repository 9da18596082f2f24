"""Axis identity: every axis of every tensor has one, and identities follow the axis signatures."""
from __future__ import annotations

from pathlib import Path

import pytest

import nndsl
from nndsl.passes.axes import verify_axes
from nndsl.recipe import DERIVE, MERGE

from test_ops import CASES, spec_for

EXAMPLES = sorted(Path(__file__).resolve().parent.parent.joinpath("examples").glob("*.nn"))


def _check_follows_signatures(ir):
    """Every axis has an identity, and each identity is what the node's signature says it is."""
    assert verify_axes(ir) == []


CORPUS = sorted(Path(__file__).resolve().parent.joinpath("fuzz_corpus").glob("*.nn"))


def test_identities_follow_the_signatures_on_every_fuzz_spec_that_checks():
    """The fuzzers' specs chain ops as no example does (a chunk into one piece contracted with its own
    source, an einsum over pieces of a concat, ...)."""
    checked = 0
    for path in CORPUS:
        res = nndsl.check(source=path.read_text(encoding="utf-8", errors="surrogateescape"))
        if res.ok:
            _check_follows_signatures(res.ir)
            checked += 1
    assert checked >= 40


def test_the_identity_check_finds_what_is_wrong():
    ir = nndsl.check(EXAMPLES[0].parent / "resnet18.nn", H=224, W=224).ir     # square: H and W of one size
    assert verify_axes(ir) == []
    relu = ir.node("a")                  # the stem's relu
    b, c, h, w = relu.axes[0]
    relu.axes = [(b, c, w, h)]           # the kept axes swapped: H's wire where W's is
    assert "a: a kept axis changed identity" in verify_axes(ir)
    relu.axes = [(b, c, h)]
    assert verify_axes(ir) == ["a: 3 identities for a 4-d tensor"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_axis_of_every_example_has_an_identity(path):
    res = nndsl.check(str(path))
    assert res.ok
    _check_follows_signatures(res.ir)
    ir = res.ir
    for n in ir.nodes():
        if n.op == "linear":                       # a linear keeps all but the last axis
            (x,) = [ir.node(u).axes[p] for u, p in ir.inputs_of(n.id)]
            assert n.axes[0][:-1] == x[:-1] and ir.axes[n.axes[0][-1]].size == n.attrs["out"]


@pytest.mark.parametrize("op", sorted(CASES))
def test_every_op_leaves_identities_that_follow_its_signature(op):
    src, _ = spec_for(op)
    _check_follows_signatures(nndsl.check(source=src).ir)


def test_batch_is_one_identity_from_the_image_to_the_logits_of_resnet18():
    ir = nndsl.check("examples/resnet18.nn").ir
    image = ir.node(ir.meta.inputs[0].node).axes[0]
    out = ir.meta.outputs[0]
    logits = ir.node(out.node).axes[out.port]
    assert image[0] == logits[0] and ir.axes[image[0]].name == "B"
    assert ir.axes[logits[1]].name == "fc" and ir.axes[logits[1]].size == 1000   # named after the layer
    # every tensor on the way carries the same batch identity in axis 0
    assert {n.axes[0][0] for n in ir.nodes()} == {image[0]}
    # the spatial axes are windows of the image's, not the image's own
    conv1 = ir.node("conv1").axes[0]
    assert ir.axes[conv1[2]].kind == DERIVE and ir.axes[conv1[2]].parents == (image[2],)
    assert ir.axes[conv1[2]].name == "H"


def test_rearrange_splits_and_merges_as_its_pattern_says():
    src = """model M {
  input x: [B, T, E]
  ensure E % 4 == 0
  h = rearrange(x, "b t (h d) -> b h t d", h=4)
  output y = rearrange(h, "b h t d -> b t (h d)")
}
"""
    res = nndsl.check(source=src)
    assert res.ok
    ir = res.ir
    x = ir.node("x").axes[0]
    h = ir.node("h").axes[0]
    y = ir.node("y").axes[0]
    assert [ir.axes[i].name for i in h] == ["B", "h", "T", "d"]
    assert h[0] == x[0] and h[2] == x[1]
    assert ir.axes[h[1]].parents == (x[2],) and ir.axes[h[3]].parents == (x[2],)
    assert ir.axes[y[2]].kind == MERGE and ir.axes[y[2]].parents == (h[1], h[3])
    assert ir.axes[y[2]].name == "(h d)"
    nndsl.load(source=src)   # and it compiles under the same fact (it used to fail)


def test_einsum_keeps_its_letters_and_joins_what_it_contracts():
    src = """model M {
  input q: [B, H, T, D]
  input k: [B, H, S, D]
  output s = einsum("bhqd,bhkd->bhqk", q, k)
}
"""
    ir = nndsl.check(source=src).ir
    q, k, s = ir.node("q").axes[0], ir.node("k").axes[0], ir.node("s").axes[0]
    assert s == (q[0], q[1], q[2], k[2])
    assert q[0] == k[0] and q[1] == k[1]
    assert q[3] == k[3]                    # `d` is contracted: one wire in both operands
    assert [ir.axes[i].name for i in s] == ["B", "H", "T", "S"]


def test_flatten_concat_and_chunk():
    src = """model M {
  input x: [B, C, H, W]
  ensure W % 2 == 0
  f = flatten(x, start=1)
  c = concat(x, x, axis=1)
  a, b = chunk(x, 2, axis=3)
  output f
  output c
  output a
  output b
}
"""
    res = nndsl.check(source=src)
    assert res.ok, [d.message for d in res.diagnostics]
    ir = res.ir
    x = ir.node("x").axes[0]
    f = ir.node("f").axes[0]
    assert f[0] == x[0] and ir.axes[f[1]].parents == x[1:] and ir.axes[f[1]].name == "(C H W)"
    c = ir.node("c").axes[0]
    assert c[0] == x[0] and c[2:] == x[2:] and ir.axes[c[1]].how == "concat"
    a_ids = ir.node("a_b").axes
    assert a_ids[0][:3] == x[:3] and ir.axes[a_ids[0][3]].how == "piece" and a_ids[0][3] != a_ids[1][3]


def test_broadcast_joins_axes_of_equal_size_only():
    src = """model M(T: int = 8, D: int = 4) {
  input x: [B, T, D]
  pos = param([1, T, D])
  output y = x + pos
}
"""
    res = nndsl.check(source=src)
    assert res.ok, [d.message for d in res.diagnostics]
    ir = res.ir
    x, pos, y = ir.node("x").axes[0], ir.node("pos").axes[0], ir.node("y").axes[0]
    assert y == x
    assert pos[1:] == x[1:] and pos[0] != x[0]     # the size-1 axis is not the batch


def test_axes_survive_the_json_round_trip():
    from nndsl.ir import IR

    ir = nndsl.check("examples/gpt2_small.nn").ir
    back = IR.from_json(ir.to_json())
    assert {i: (a.name, str(a.size), a.kind, a.parents) for i, a in back.axes.items()} == \
        {i: (a.name, str(a.size), a.kind, a.parents) for i, a in ir.axes.items()}
    assert [n.axes for n in back.nodes()] == [n.axes for n in ir.nodes()]
