"""Facts (`ensure`) about free dims: stated in a block, carried through unification to the caller's
dims, used by every pass and by the lowering; checked once the dims are bound."""
from __future__ import annotations

import torch

import nndsl

HEADS = """block Heads(heads: int) {
  input x: [B, T, D]
  ensure D % heads == 0
  output y = rearrange(x, "b t (h d) -> b h t d", h=heads)
}
model M(heads: int = 4) {
  input x: [N, L, E]
  output y = Heads(x, heads)
}
"""


def test_a_block_fact_holds_for_the_model_dim_it_is_called_with():
    res = nndsl.check(source=HEADS)
    assert res.ok, [d.message for d in res.diagnostics]
    assert str(res.ir.node(res.ir.meta.outputs[0].node).outputs[0]) == "[N, 4, L, E // 4]"
    assert ("E", "4") in res.ir.meta.facts          # carried from `D % heads` through D := E, heads = 4
    m = nndsl.load(source=HEADS, seed=0)
    assert m(torch.randn(2, 3, 8)).shape == (2, 4, 3, 2)


def test_a_block_fact_is_checked_when_the_dim_is_bound():
    res = nndsl.check(source=HEADS, E=10)
    assert [d.code for d in res.errors][0] == "E0206"      # the block's own statement, then what it guarded
    assert res.errors[0].span.line == 3 and res.errors[0].call_sites[0].block == "Heads"


def test_the_model_states_the_fact_in_its_own_words():
    """Without the block's fact, the help names the caller's dims (what the user can write there)."""
    src = HEADS.replace("  ensure D % heads == 0\n", "")
    res = nndsl.check(source=src)
    assert [d.code for d in res.errors] == ["E0205"]
    assert res.errors[0].help == "state it with `ensure E % 4 == 0`"


def test_bounds_on_free_dims_are_preconditions_checked_once_bound():
    src = """model M {
  input x: [B, H, W]
  ensure H >= 1
  ensure W > 2
  output y = relu(x)
}
"""
    assert nndsl.check(source=src).ok
    assert nndsl.check(source=src, W=3, H=1).ok
    res = nndsl.check(source=src, W=2)
    assert [d.code for d in res.errors] == ["E0206"] and res.errors[0].span.line == 4
    assert nndsl.check(source=src, H=0).errors   # H >= 1 is checked too


def test_gpt2_position_table_bounds_the_sequence():
    assert nndsl.check("examples/gpt2_small.nn", T=1024).ok
    res = nndsl.check("examples/gpt2_small.nn", T=2048)
    codes = [d.code for d in res.errors]
    assert codes[0] == "E0206" and "E0201" in codes   # the ensure, and the embedding it protects


def test_facts_are_passed_not_ambient():
    from nndsl import dims
    from nndsl.dims import Dim, Facts

    e = Dim.sym("E")
    q = e.floordiv(4)
    assert str(q * 4) != "E"                       # no fact in force anywhere: nothing to use
    facts = Facts()
    facts.add(e, Dim.const(4))
    assert facts.simplify(q * 4) == e and e.floordiv(4, facts) * 4 != e   # only where it is passed
    assert (Dim.sym("H").floordiv(4) * 4).subs({"H": e}, facts) == e        # and through substitution
    assert not any(name.startswith("_FACTS") or "ContextVar" in name for name in vars(dims))
