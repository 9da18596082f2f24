"""The equivariance pass: proves or refutes `ensure y invariant|equivariant under S` statically, from
the axis identities (passes/axes.py) and each op's axis signature, for groups that permute an input
axis (`group S = perm(N)`).

A tensor either does not depend on the acted input, or it does and the action reaches it intact
(permuting the acted positions permutes its entries along the axes that carry the acted identity, and
leaves a tensor without that axis unchanged), or an op broke it. Per op, read off its signature:

- an op with a parameter facing the acted axis weights positions differently: broken (a `linear` over
  the positions, a per-position `param`, a norm's affine over it);
- an op combining an acted tensor with one that varies along the acted axis but does not depend on the
  input (a positional table, a mask over positions): broken;
- the acted axis merged, split, windowed, sliced, indexed, concatenated: broken for windows, slices,
  selects, indices and concatenation (positions are no longer interchangeable), unknown otherwise;
- the acted axis contracted: fine when every side of the contraction carries it (Σ_n a_n b_n with both
  permuted alike: a Gram matrix, attention's token mixing), or when the op is a symmetric reduction
  (sum, mean, max, min); otherwise broken;
- position-aware ops along it (roll, positions, cumulative ops): broken;
- everything else (pointwise ops, ops on other axes, softmax or normalization along it): kept.

A claim is proved, refuted (E0802, naming the first op that broke the action and why) or unknown
(W0801); never claimed without proof.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..diagnostics import Diagnostic, Label, Sink
from ..ir import IR
from ..recipe import DERIVE, KEEP, MERGE

POSITIONAL = ("roll", "positions", "arange_like", "take", "gather_rows", "select")
SYMMETRIC_REDUCE = ("sum", "mean", "max", "min", "logsumexp")


@dataclass
class _State:
    dep: bool = False                  # depends on the acted input
    broken: Optional[tuple] = None     # (node id, why, help) of the first op that broke the action
    unknown: Optional[tuple] = None    # (node id, why) of the first op the checker has no rule for


def check_symmetry(ir: IR, sink: Sink) -> None:
    if not ir.meta.claims:
        return
    by_group: dict[str, list] = {}
    for a in ir.meta.actions:
        by_group.setdefault(a.group, []).append(a)
    propagated: dict[str, dict] = {}                  # one pass per group, shared by its claims
    for c in ir.meta.claims:
        acts = by_group.get(c.group)
        if not acts:
            sink.add(Diagnostic(code="E0801", message=f"no input is acted on by `{c.group}`", span=c.span,
                                help=f"annotate the input: `input x: [B, N, D] acted by {c.group}`"), c.scope)
            continue
        states = propagated.get(c.group)
        if states is None:
            states = propagated[c.group] = _propagate(ir, acts)
        st = states.get((c.node, c.port), _State())
        node = ir.node(c.node)
        ids = node.axes[c.port] if node.axes and c.port < len(node.axes) else ()
        acted_ids = {_identity(ir, a) for a in acts}
        dims = ", ".join(a.dim for a in acts)
        if st.broken is not None:
            nid, why, help_ = st.broken
            culprit = ir.node(nid)
            sink.add(Diagnostic(code="E0802", message=f"`{c.tensor}` is not {c.claim} under {c.group}: {why}",
                                span=c.span, label="refuted",
                                secondary=[Label(span=culprit.span, message="breaks the permutation of "
                                                 f"{dims} here")] if culprit.span else [],
                                help=help_), c.scope)
            continue
        if st.unknown is not None:
            nid, why = st.unknown
            culprit = ir.node(nid)
            sink.add(Diagnostic(code="W0801", severity="warning",
                                message=f"cannot prove `{c.tensor}` {c.claim} under {c.group}: {why}", span=c.span,
                                label="not proved",
                                secondary=[Label(span=culprit.span, message="no rule for this")] if culprit.span
                                else []), c.scope)
            continue
        if c.claim == "invariant" and st.dep and acted_ids & set(ids):
            sink.add(Diagnostic(code="E0802", message=f"`{c.tensor}` is not invariant under {c.group}: it still "
                                f"has the permuted axis {dims}, so permuting the input permutes it",
                                span=c.span, label="equivariant, not invariant",
                                help=f"reduce the axis first (`sum(..., axes=[{acts[0].dim}])`, `mean`, `max`), "
                                "or claim `equivariant`"), c.scope)


def _identity(ir: IR, action) -> int:
    return ir.node(action.node).axes[0][action.axis]


def _propagate(ir: IR, acts) -> dict:
    from .. import ops as O

    acted = {_identity(ir, a) for a in acts}
    sources = {a.node for a in acts}
    dim = acts[0].dim
    states: dict[tuple[str, int], _State] = {}
    for nid in ir.order:
        node = ir.node(nid)
        if not node.outputs:
            continue
        ins = ir.inputs_of(nid)
        in_states = [states.get(e, _State()) for e in ins]
        if nid in sources:
            out = _State(dep=True)
        elif not any(s.dep for s in in_states):
            out = _State()
        elif any(s.broken for s in in_states):
            out = _State(dep=True, broken=next(s.broken for s in in_states if s.broken))
        else:
            out = _State(dep=True, unknown=next((s.unknown for s in in_states if s.unknown), None))
            why = _rule(ir, node, ins, in_states, acted, dim, O)
            if why is not None:
                kind, text, help_ = why
                if kind == "broken":
                    out.broken = (nid, text, help_)
                elif out.unknown is None:
                    out.unknown = (nid, text)
        for port in range(len(node.outputs)):
            states[(nid, port)] = out
    return states


def _rule(ir: IR, node, ins, in_states, acted: set, dim: str, O):
    """None when the op keeps the action; ("broken" | "unknown", why, help) otherwise."""
    in_ids = []
    for u, p in ins:
        ax = ir.node(u).axes
        in_ids.append(ax[p] if ax and p < len(ax) else ())
    touches = any(acted & set(ids) for ids in in_ids)
    if not touches:
        return None                                      # works on other axes only
    op = node.op
    od = O.get(op)
    traits = od.traits if od is not None else frozenset()
    what = f"`{op}`" + (f" (`{node.binding}`)" if node.binding and node.binding != op else "")
    if od is not None and od.equivariance is not None and in_ids:       # the op's own rule
        hits = [k for k, i in enumerate(in_ids[0]) if i in acted]
        reasons = [od.equivariance(node.recipe.attrs if node.recipe is not None else node.attrs, k, len(in_ids[0]))
                   for k in hits]
        bad = next((r for r in reasons if r), None)
        if bad is None and all(not (acted & set(ids)) for ids in in_ids[1:]):
            return None
        if bad is not None:
            return ("broken", f"{what} breaks the permutation of {dim}: {bad}",
                    f"apply it with the permuted axis as its set axis (`axis={dim}`)")
    # a parameter facing the acted axis: positions weighted differently
    for p in node.params:
        for f in p.faces:
            if f.side == "in" and f.index < len(in_ids) and f.axis < len(in_ids[f.index]) and \
                    in_ids[f.index][f.axis] in acted:
                return ("broken", f"{what} has a weight along {dim} ({p.name or 'its value'}): it treats the "
                        f"positions of {dim} differently",
                        f"mix features, not positions: apply it to an axis other than {dim}, or reduce {dim} first")
            if f.side == "out" and node.axes and f.axis < len(node.axes[0]) and node.axes[0][f.axis] in acted:
                return ("broken", f"{what} has a parameter along {dim} ({p.name or 'its value'}): one value "
                        f"per position", f"share it across {dim}")
    # a tensor that varies along the acted axis without depending on the input
    for ids, s in zip(in_ids, in_states):
        if not s.dep and acted & set(ids):
            if op in ("add", "sub"):          # a sum over the axis later would cancel it: not refuted
                return ("unknown", f"{what} adds a tensor that varies along {dim} but is not permuted with it "
                        f"(a positional table?)", None)
            return ("broken", f"{what} combines the input with a tensor that varies along {dim} but is not "
                    f"permuted with it (a positional table, a mask over positions)",
                    "drop the positional term, or make it depend only on the input")
    attrs = node.recipe.attrs if node.recipe is not None else node.attrs
    if attrs.get("causal"):
        return ("broken", f"{what} has a causal mask: each position sees only those before it along {dim}",
                "drop `causal=true`, or acted positions cannot be ordered")
    if op in POSITIONAL or "index" in traits:
        return ("broken", f"{what} depends on the order of positions along {dim}",
                "order-free ops keep the symmetry: pointwise ops, sums, means, attention without positions")
    sig = node.recipe.sig if node.recipe is not None else None
    if sig is None:
        return ("unknown", f"{what} has no axis signature", None)
    # how each output axis comes from the acted one
    for o, rules in enumerate(sig.outs):
        for rule in rules:
            refs = [r for r in rule.refs if r.arg < len(in_ids) and r.axis < len(in_ids[r.arg])
                    and in_ids[r.arg][r.axis] in acted]
            if not refs:
                continue
            if rule.kind is KEEP and all(r.parts == 1 for r in refs):
                continue
            if rule.kind is DERIVE and rule.how in ("window", "slice", "piece", "concat", "resize"):
                return ("broken", f"{what} takes a {rule.how} of {dim}: positions are no longer interchangeable",
                        "keep the acted axis whole; pool or convolve over other axes")
            if rule.kind in (MERGE, DERIVE) or any(r.parts > 1 for r in refs):
                return ("unknown", f"{what} reshapes the acted axis {dim}", None)
    for group in sig.contracted:
        on = [r for r in group if r.arg < len(in_ids) and r.axis < len(in_ids[r.arg]) and in_ids[r.arg][r.axis] in acted]
        if not on:
            continue
        if op in SYMMETRIC_REDUCE or "reduce" in traits:
            continue
        sides = {r.arg for r in group}
        if len(on) == len(group) and len(sides) > 1 and all(in_states[a].dep for a in sides):
            continue                                      # Σ_n a_n b_n: both permuted alike
        return ("broken", f"{what} sums over {dim} against something that is not permuted with it",
                f"contract {dim} only between tensors that both carry it, or use sum/mean/max")
    for r in sig.reduced:
        if r.arg < len(in_ids) and r.axis < len(in_ids[r.arg]) and in_ids[r.arg][r.axis] in acted:
            if op in SYMMETRIC_REDUCE or "reduce" in traits or "norm" in traits or op in ("softmax", "log_softmax"):
                continue
            return ("broken", f"{what} reduces {dim} in an order-dependent way", "use sum, mean or max over it")
    return None
