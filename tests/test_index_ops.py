"""Index arithmetic in the spec: Swin's relative-position bias and a causal mask, written with `arange`,
`//`, `%`, comparisons, `take`, `roll` and `masked_fill`, against the reference computations."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import nndsl

RELPOS = """model RelPos(M: int = 7, heads: int = 3) {
  input x: [B, heads, M * M, M * M]
  table = param([(2 * M - 1) * (2 * M - 1), heads])
  r = arange(M * M)
  dy = r // M
  dx = r % M
  rel_y = reshape(dy, [M * M, 1]) - reshape(dy, [1, M * M]) + (M - 1)
  rel_x = reshape(dx, [M * M, 1]) - reshape(dx, [1, M * M]) + (M - 1)
  index = rel_y * (2 * M - 1) + rel_x
  bias = take(table, index, axis=0)
  output y = x + permute(bias, [2, 0, 1])
}
"""


def _swin_index(m: int) -> torch.Tensor:
    """The relative position index as the Swin Transformer's reference code computes it."""
    coords = torch.stack(torch.meshgrid([torch.arange(m), torch.arange(m)], indexing="ij"))
    flat = torch.flatten(coords, 1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += m - 1
    rel[:, :, 1] += m - 1
    rel[:, :, 0] *= 2 * m - 1
    return rel.sum(-1)


def test_swin_relative_position_bias_matches_the_reference():
    res = nndsl.check(source=RELPOS)
    assert res.ok, [d.message for d in res.diagnostics]
    m = nndsl.load(source=RELPOS, seed=0)
    assert dict(m.named_parameters())["table"].shape == (169, 3)   # (2M-1)^2 rows, one column per head
    x = torch.zeros(2, 3, 49, 49)
    want = m.table[_swin_index(7).view(-1)].view(49, 49, 3).permute(2, 0, 1)
    assert torch.equal(m(x)[0], want) and torch.equal(m(x)[1], want)


def test_a_causal_mask_from_positions_and_a_comparison():
    src = """model Causal {
  input scores: [B, T, T]
  i = reshape(positions(scores, axis=1), [T, 1])
  j = reshape(positions(scores, axis=2), [1, T])
  output y = softmax(masked_fill(scores, j > i, -1e9))
}
"""
    res = nndsl.check(source=src)
    assert res.ok, [d.message for d in res.diagnostics]
    s = torch.randn(2, 5, 5)
    want = torch.softmax(s.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), -1e9), -1)
    assert torch.allclose(nndsl.load(source=src)(s), want)


def test_roll_and_where():
    src = """model Shift {
  input x: [B, H, W, C]
  shifted = roll(x, [-3, -3], [1, 2])
  output y = where(shifted > 0, shifted, 0.1 * shifted)
}
"""
    x = torch.randn(2, 8, 8, 4)
    r = torch.roll(x, (-3, -3), (1, 2))
    assert torch.allclose(nndsl.load(source=src)(x), torch.where(r > 0, r, 0.1 * r))


def test_value_bounds_cross_block_boundaries():
    """Indices computed in one block and used in another keep their bound: the table is too small."""
    src = (Path(__file__).parent / "fuzz_corpus" / "value_bound_crosses_block_inputs.nn").read_text()
    bad = nndsl.check(source=src)
    assert [d.code for d in bad.errors] == ["E0201"] and "up to 3" in bad.errors[0].message
    ok = nndsl.check(source=src.replace("num=2", "num=4"))
    assert ok.ok
    assert nndsl.load(source=src.replace("num=2", "num=4"))(torch.randn(2, 4)).shape == (4, 3)


def test_index_ops_are_checked():
    bad = nndsl.check(source="model M {\n  input x: [4, 3]\n  output take(x, arange(5), axis=0)\n}\n")
    assert [d.code for d in bad.errors] == ["E0201"] and "up to 4" in bad.errors[0].message
    bad = nndsl.check(source="model M {\n  input x: [4, 3]\n  output where(x, x, x)\n}\n")
    assert [d.code for d in bad.errors] == ["E0208"]
    bad = nndsl.check(source="model M {\n  input x: [4, 3] int64\n  output x // 0\n}\n")
    assert [d.code for d in bad.errors] == ["E0111"]
    bad = nndsl.check(source="model M(n: int = 3) {\n  input x: [4, 3]\n  ensure x < 2\n  output x\n}\n")
    assert bad.errors and bad.errors[0].code == "E0115"      # a mask is not a condition


def test_a_block_owns_parameters_at_its_own_name():
    """ConvNeXt's LayerNorm2d: `.weight` and `.bias` directly on the block, normalising channels-first."""
    src = """block LayerNorm2d(C: int, eps: float = 1e-6) {
  input x: [B, C, H, W]
  weight = param([C], fill=1.0)
  bias = param([C], std=0.0)
  y = layernorm(x, axis=1, eps=eps, affine=false)
  output y * reshape(weight, [C, 1, 1]) + reshape(bias, [C, 1, 1])
}
model M {
  input x: [B, 8, H, W]
  norm = LayerNorm2d(x, 8)
  output conv2d(norm, 4, kernel=1)
}
"""
    m = nndsl.load(source=src, seed=0)
    sd = m.state_dict()
    assert sorted(sd) == ["norm.bias", "norm.weight", "out.bias", "out.weight"]
    assert torch.equal(sd["norm.weight"], torch.ones(8)) and torch.equal(sd["norm.bias"], torch.zeros(8))
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        sd["norm.weight"].uniform_()
        u = x - x.mean(1, keepdim=True)
        ref = u / torch.sqrt((u * u).mean(1, keepdim=True) + 1e-6)       # ConvNeXt's own formula
        ref = sd["norm.weight"][:, None, None] * ref + sd["norm.bias"][:, None, None]
        assert torch.allclose(m.norm(x), ref, atol=1e-5)
        assert torch.allclose(m(x), m.out(ref), atol=1e-5)


SWIN_ATTN = """block WindowBias(M: int, heads: int) {
  input scores: [B, heads, M * M, M * M]
  relative_position_bias_table = param([(2 * M - 1) * (2 * M - 1), heads])
  r = arange(M * M)
  rel_y = reshape(r // M, [M * M, 1]) - reshape(r // M, [1, M * M]) + (M - 1)
  rel_x = reshape(r % M, [M * M, 1]) - reshape(r % M, [1, M * M]) + (M - 1)
  relative_position_index = buffer(rel_y * (2 * M - 1) + rel_x)
  bias = take(relative_position_bias_table, reshape(relative_position_index, [-1]), axis=0)
  output scores + permute(reshape(bias, [M * M, M * M, heads]), [2, 0, 1])
}
model M {
  input scores: [B, 3, 49, 49]
  output attn = WindowBias(scores, 7, 3)
}
"""


def test_a_buffer_is_computed_once_and_kept_at_its_name():
    """Swin's `relative_position_index`: a registered buffer at torchvision's key, computed in __init__."""
    res = nndsl.check(source=SWIN_ATTN)
    assert res.ok, [d.message for d in res.diagnostics]
    src = nndsl.compile_source(source=SWIN_ATTN)
    init, forward = src.split("def forward", 1)[0], src.split("def forward", 1)[1].split("\n\n\n", 1)[0]
    assert "torch.arange(49)" in init and "torch.arange" not in forward   # built once, read in forward
    m = nndsl.load(source=SWIN_ATTN, seed=0)
    sd = m.state_dict()
    assert sorted(sd) == ["attn.relative_position_bias_table", "attn.relative_position_index"]
    assert torch.equal(sd["attn.relative_position_index"], _swin_index(7))
    x = torch.randn(2, 3, 49, 49)
    table = sd["attn.relative_position_bias_table"]
    want = x + table[_swin_index(7).view(-1)].view(49, 49, 3).permute(2, 0, 1)
    assert torch.allclose(m(x), want)
    from nndsl.backends.summary import totals
    assert totals(res.ir)["buffers"] == 49 * 49 and totals(res.ir)["total_params"] == 169 * 3


def test_a_buffer_of_run_time_values_is_an_error():
    src = SWIN_ATTN.replace("buffer(rel_y * (2 * M - 1) + rel_x)", "buffer(rel_y * (2 * M - 1) + rel_x + reshape(positions(scores, axis=2), [1, M * M]))")
    res = nndsl.check(source=src)
    (e,) = [d for d in res.errors if d.code == "E0118"]
    assert "scores" in e.notes[0] and e.call_sites[0].block == "WindowBias"
    # the indices it makes also overrun the bias table (their range is followed through the sum): E0201
    assert {d.code for d in res.errors} <= {"E0118", "E0201"}


# -- value ranges: lower bounds as well as upper ones --------------------------------------------------------
RANGES = {
    # expression of p = positions(t, axis=1) over T = 8, the table size, the expected code (None: accepted)
    "p + 1": (9, None), "p - 1": (10, "negative"), "(p - 1) + 1": (8, None), "7 - p": (8, None),
    "p * -1": (10, "negative"), "p % 3": (3, None), "p // 2": (4, None), "p // 2 + 4": (8, None),
    "p * 2": (10, "up to 14"), "p % 3 - 3": (10, "negative"), "sum(reshape(p, [2, 4]), axes=[1])": (29, None),
}
SAFE_ONLY = {"sum(reshape(p, [2, 4]), axes=[1])"}     # a sum's range is safe, not tight (7 * 4 + 1 > 22 + 1)


@pytest.mark.parametrize("expr", list(RANGES))
def test_index_arithmetic_keeps_exact_ranges(expr):
    """Each expression is accepted exactly when every index it can produce is in the table: the checker's
    range [lo, hi) is the true one (checked against the values PyTorch computes)."""
    import torch

    table, want = RANGES[expr]
    src = (f"model M {{\n  input t: [B, 8] int64\n  p = positions(t, axis=1)\n  q = {expr}\n"
           f"  output y = embedding(q, {table}, 2)\n}}\n")
    r = nndsl.check(source=src)
    if want is None:
        assert r.ok, r.diagnostics
        node = next(n for n in r.ir.nodes() if n.binding == "q")
        lo, hi = node.outputs[0].vmin.value, node.outputs[0].vmax.value
        m = nndsl.load(source=src.replace(f"  output y = embedding(q, {table}, 2)", "  output q"), seed=0)
        vals = m(torch.zeros(1, 8, dtype=torch.int64))
        assert lo <= int(vals.min()) and hi >= int(vals.max()) + 1, (expr, lo, hi, vals)   # safe
        if expr not in SAFE_ONLY:
            assert lo == int(vals.min()) and hi == int(vals.max()) + 1, (expr, lo, hi, vals)   # and exact
    else:
        (d,) = r.diagnostics
        assert d.code == "E0201" and want in d.message, (expr, d.message)


def test_a_relative_position_index_is_checked_exactly():
    """Swin's relative positions: i - j in [-(W-1), W-1], shifted by W - 1 into a table of 2W - 1 rows."""
    src = ("model Rel(W: int = 4) {\n  input x: [B, W]\n  i = positions(x, axis=1)\n"
           "  rel = reshape(i, [W, 1]) - reshape(i, [1, W])\n  output y = embedding(rel + (W - 1), 2 * W - 1, 3)\n}\n")
    assert nndsl.check(source=src).ok
    assert "negative: they go down to -3" in nndsl.check(source=src.replace("rel + (W - 1)", "rel")).diagnostics[0].message
    assert "up to 6 but the table has 6" in nndsl.check(source=src.replace("2 * W - 1, 3", "2 * W - 2, 3")).diagnostics[0].message
