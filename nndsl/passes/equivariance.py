"""The equivariance pass: proves or refutes `ensure y invariant|equivariant under G` statically, from the
axis identities (passes/axes.py) and each op's axis signature, one factor of G at a time
(nndsl/symmetry/groups.py: a claim holds under a product when it holds under every factor).

Per factor, every axis identity the factor acts on carries a role: `perm` (a set axis: permuted; also the
rolls of `cyclic` and `dihedral`), `row` and `col` (the two axes of a grid that `c4`/`d4` rotate),
`regular` (a group axis made by `gconv2d`: the group permutes it as it rotates the grid) or `vec`
(coordinates that `o3`/`so3`/`e3` rotate). A tensor either does not depend on the acted inputs, or the
action reaches it intact (acting on the inputs acts on it along its axes that carry a role, and leaves a
tensor without them unchanged), or an op broke it. Each op is judged by its family's rule:

- sets (`perm`, `cyclic`, `dihedral`): a parameter facing the acted axis, a product with a tensor that
  varies along it without depending on the input, windows, slices, selects, indices, causal masks and
  positions break the action; contractions over it are fine when every side carries it, symmetric
  reductions, softmax and norms along it are fine; merges and splits are unknown. `cyclic` also keeps
  rolls and circular convolutions of stride 1 along its axis.
- grids (`c4`, `d4`): pointwise ops and ops on other axes keep the rotation; a convolution with a free
  kernel breaks it (convolutions are only translation-equivariant: `gconv2d` is the equivariant one),
  except a 1x1 kernel; pooling and 1x1 convolutions keep it when their windows sample the grid
  symmetrically ((S + 2p - k) a multiple of the stride); a reduction, norm or contraction over one grid
  axis without the other breaks it (a rotation swaps them); `group_pool` turns the group axis invariant.
- coordinates (`o3`, `so3`): only linear maps commute with rotations: sums, differences, scaling by
  invariants, layout ops, contractions over other axes without a bias, and dot products (a contraction
  of the coordinates between two rotated tensors, which is invariant). Anything nonlinear breaks it;
  `frame_average` is how a nonlinear block becomes exactly invariant or equivariant. `e3` adds
  translations, which nndsl proves only through `frame_average`.

An op record may carry its own rule (`OpDef.equivariance`, given an `EqQuery`). A block instance that is
frame-averaged over the factor (`frame_average(Block(x), group=G)`) has outputs that keep the action
whatever is inside. A claim is proved, refuted (E0802, naming the first op that broke the action and
why, with the equivariant replacement as help) or unknown (W0801); never claimed without proof. The
pass records its verdict and the role of each axis of the claimed tensor on the claim.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

from ..diagnostics import Diagnostic, Label, Sink
from ..ir import IR
from ..recipe import DERIVE, KEEP, MERGE

POSITIONAL = ("roll", "positions", "arange_like", "take", "gather_rows", "select")
SYMMETRIC_REDUCE = ("sum", "mean", "max", "min", "logsumexp", "group_pool")
LINEAR_LAYOUT = ("identity", "dropout", "drop_path", "transpose", "permute", "expand_like", "concat", "select",
                 "slice", "split", "chunk", "rearrange", "reshape", "flatten")


class EqQuery(NamedTuple):
    """What an op's own equivariance rule is given: the factor's kind and family, the op's resolved
    attributes, per input the role of each axis (None: not acted) and the input and output types."""

    kind: str
    family: str
    attrs: dict
    roles: tuple
    ins: tuple
    outs: tuple
    facts: object = None               # the spec's divisibility facts (nndsl.dims.Facts)
    gens: list = []                    # `matrices`: the factor's generators


class Verdict(NamedTuple):
    """An op rule's answer: "kept" (with, optionally, the role of each axis of output 0; None: the
    signature decides), "broken" or "unknown" with why and a help."""

    kind: str
    why: str = ""
    help: Optional[str] = None
    out_roles: Optional[tuple] = None


@dataclass
class _State:
    dep: bool = False                  # depends on the acted input
    broken: Optional[tuple] = None     # (node id, why, help) of the first op that broke the action
    unknown: Optional[tuple] = None    # (node id, why) of the first op the checker has no rule for


@dataclass
class _Factor:
    group: str
    index: int
    kind: str
    family: str
    dims: str
    acts: list
    roles: dict = field(default_factory=dict)     # axis identity -> role
    states: Optional[dict] = None
    _facts: Optional[object] = None

    def facts(self, ir: IR):
        """The spec's divisibility facts (`ensure S % 2 == 0`), read once."""
        if self._facts is None:
            from ..dims import Facts, parse_dim

            self._facts = Facts()
            for num, den in ir.meta.facts:
                self._facts.add(parse_dim(num), parse_dim(den))
        return self._facts


def check_symmetry(ir: IR, sink: Sink) -> None:
    from ..symmetry.groups import KINDS

    by_factor: dict[tuple[str, int], _Factor] = {}
    for a in ir.meta.actions:
        key = (a.group, a.factor)
        f = by_factor.get(key)
        if f is None:
            f = by_factor[key] = _Factor(a.group, a.factor, a.kind, KINDS[a.kind][0], a.dim, [])
        elif a.dim not in f.dims.split(", "):
            f.dims += f", {a.dim}"
        f.acts.append(a)
    for path in ir.meta.frames:             # frame averages: the roles they transform are needed to compile
        fr = ir.meta.instances[path].frame
        f = by_factor.get((fr.group, fr.factors[0]))
        if f is None:
            sink.add(Diagnostic(code="E0801", message=f"`frame_average` over `{fr.group}`, but no input is acted on "
                                f"by it", span=fr.span, help=f"annotate the input: `input x: [B, N, D] acted by "
                                f"{fr.group}`"), ir.meta.instances[path].parent or "")
            continue
        if f.states is None:
            f.states = _propagate(ir, f, sink)
    for c in ir.meta.claims:
        factors = [f for (g, _), f in sorted(by_factor.items()) if g == c.group]
        if not factors:
            sink.add(Diagnostic(code="E0801", message=f"no input is acted on by `{c.group}`", span=c.span,
                                help=f"annotate the input: `input x: [B, N, D] acted by {c.group}`"), c.scope)
            c.verdict = "refuted"
            continue
        node = ir.node(c.node)
        ids = node.axes[c.port] if node.axes and c.port < len(node.axes) else ()
        verdict, unknown = "proved", None
        for f in factors:
            if f.states is None:
                f.states = _propagate(ir, f, sink)
            st = f.states.get((c.node, c.port), _State())
            c.roles[f.index] = [f.roles.get(i, "") for i in ids]
            what = c.group if len(factors) == 1 else f"{c.group} (its factor {f.kind}({f.dims}))"
            if st.broken is not None:
                nid, why, help_ = st.broken
                culprit = ir.node(nid)
                sink.add(Diagnostic(code="E0802", message=f"`{c.tensor}` is not {c.claim} under {what}: {why}",
                                    span=c.span, label="refuted",
                                    secondary=[Label(span=culprit.span, message=f"breaks the action on {f.dims} "
                                                     "here")] if culprit.span else [],
                                    help=help_), c.scope)
                verdict = "refuted"
                break
            if st.unknown is not None:
                unknown = unknown or (f, st.unknown, what)
                continue
            if c.claim == "invariant" and st.dep and any(f.roles.get(i) for i in ids):
                sink.add(Diagnostic(code="E0802", message=f"`{c.tensor}` is not invariant under {what}: it still "
                                    f"has the acted axis {_acted_names(ir, f, ids)}, so acting on the input acts "
                                    "on it", span=c.span, label="equivariant, not invariant",
                                    help=_reduce_help(f)), c.scope)
                verdict = "refuted"
                break
        else:
            if unknown is not None:
                f, (nid, why), what = unknown
                culprit = ir.node(nid)
                sink.add(Diagnostic(code="W0801", severity="warning",
                                    message=f"cannot prove `{c.tensor}` {c.claim} under {what}: {why}", span=c.span,
                                    label="not proved",
                                    secondary=[Label(span=culprit.span, message="no rule for this")] if culprit.span
                                    else []), c.scope)
                verdict = "unknown"
        c.verdict = verdict


def _acted_names(ir: IR, f: _Factor, ids) -> str:
    names = []
    for i in ids:
        if f.roles.get(i):
            try:
                names.append(ir.axes[i].name)
            except (IndexError, AttributeError, TypeError):
                names.append(f.dims)
    return ", ".join(dict.fromkeys(names)) or f.dims


def _reduce_help(f: _Factor) -> str:
    if f.family == "grid":
        return "pool the group axis (`group_pool`) and both grid axes (`mean(..., axes=[H, W])`), or claim " \
               "`equivariant`"
    if f.family == "linear":
        return "take invariants of the coordinates (dot products), or `frame_average(Block(x), group=G)`; or " \
               "claim `equivariant`"
    return f"reduce the axis first (`sum(..., axes=[{f.dims.split(', ')[0]}])`, `mean`, `max`), or claim `equivariant`"


def _propagate(ir: IR, f: _Factor, sink: Sink) -> dict:
    from .. import ops as O

    for a in f.acts:
        f.roles[ir.node(a.node).axes[0][a.axis]] = a.role
    sources = {a.node for a in f.acts}
    averaged = {}                       # (node, port) -> (instance, output index) of frame averages over f
    for path in ir.meta.frames:
        inst = ir.meta.instances[path]
        if inst.frame.group == f.group and f.index in inst.frame.factors:
            for j, o in enumerate(inst.outputs):
                averaged[tuple(o)] = (inst, j)
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
            why = _judge(ir, node, ins, in_states, f, O)
            if why is not None:
                kind, text, help_ = why
                if kind == "broken" and out.unknown is None:   # after an op without a rule, nothing is refuted
                    out.broken = (nid, text, help_)
                elif out.unknown is None:
                    out.unknown = (nid, text)
        for port in range(len(node.outputs)):
            key = (nid, port)
            hit = averaged.get(key)
            if hit is None:
                states[key] = out
                continue
            inst, j = hit                # frame-averaged: the action holds whatever the block does inside
            if not inst.frame.out_roles:
                _frame_roles(ir, inst, f, sink)
            roles = inst.frame.out_roles[j] if inst.frame.out_roles else []
            states[key] = _State(dep=True)
            for i, r in zip(node.axes[port], roles):
                if r:
                    f.roles[i] = r
                else:
                    f.roles.pop(i, None)
    return states


def _frame_roles(ir: IR, inst, f: _Factor, sink: Sink) -> None:
    """What a frame average transforms: per block input the roles its axes carry here, and per output
    none (invariant) or, with `equivariant=true`, the roles of the first acted input aligned from the end."""
    fr = inst.frame
    ins = [[f.roles.get(i, "") for i in ir.node(b).axes[0]] for b in inst.inputs]
    ref = next((k for k, r in enumerate(ins) if any(r)), None)
    if ref is None:
        sink.add(Diagnostic(code="E0801", message=f"`frame_average` over `{fr.group}`: no input of the block carries "
                            f"an axis that {f.kind}({f.dims}) acts on", span=fr.span,
                            help="average a block whose input is the acted tensor"), inst.parent or "")
        return
    in_t = ir.node(inst.inputs[ref]).outputs[0]
    outs = []
    for (nid, port) in inst.outputs:
        t = ir.node(nid).outputs[port]
        roles = [""] * t.rank
        if fr.equivariant:
            for k in range(1, min(t.rank, len(ins[ref])) + 1):
                r = ins[ref][-k]
                if not r:
                    continue
                if t.shape[-k] != in_t.shape[-k]:
                    sink.add(Diagnostic(code="E0801", message=f"an equivariant `frame_average` returns the acted "
                                        f"axes as the block got them, but its output axis {t.rank - k} has size "
                                        f"{t.shape[-k]}, not {in_t.shape[-k]}", span=fr.span,
                                        help="end the block with the acted axes in place, or drop `equivariant=true`"),
                             inst.parent or "")
                    return
                roles[-k] = r
            if not any(roles):
                sink.add(Diagnostic(code="E0801", message="an equivariant `frame_average` needs an output with the "
                                    "acted axes", span=fr.span, help="drop `equivariant=true` for an invariant"),
                         inst.parent or "")
                return
        outs.append(roles)
    fr.inputs = ins
    fr.out_roles = outs


def _judge(ir: IR, node, ins, in_states, f: _Factor, O):
    """None when the op keeps the action; ("broken" | "unknown", why, help) otherwise. Registers the role of
    new output axes that carry the action (a pooled grid, a group axis)."""
    in_ids = []
    for u, p in ins:
        ax = ir.node(u).axes
        in_ids.append(ax[p] if ax and p < len(ax) else ())
    roles_in = tuple(tuple(f.roles.get(i) for i in ids) for ids in in_ids)
    if not any(r for rs in roles_in for r in rs) or node.op == "block_input":
        return None                                      # works on other axes only, or passes a block's input
    od = O.get(node.op)
    attrs = node.recipe.attrs if node.recipe is not None else node.attrs
    what = f"`{node.op}`" + (f" (`{node.binding}`)" if node.binding and node.binding != node.op else "")
    if od is not None and od.equivariance is not None:   # the op's own rule
        v = od.equivariance(EqQuery(f.kind, f.family, attrs, roles_in, tuple(ir.in_types(node.id)),
                                    tuple(node.outputs), f.facts(ir), f.acts[0].gens))
        if isinstance(v, str):
            v = Verdict("broken", v)
        if v is not None and v.kind != "kept":
            return (v.kind, f"{what} {v.why}", v.help)
        if v is not None and v.out_roles is not None:
            for i, r in zip(node.axes[0], v.out_roles):
                if r:
                    f.roles[i] = r
            return None
        return _signature_roles(ir, node, in_ids, f, what, own_rule=True)
    family = "set" if f.kind == "matrices" and _permutations(f) else f.family   # permutation matrices
    rule = {"set": _set_rule, "grid": _grid_rule, "linear": _linear_rule}[family]
    return rule(ir, node, od, attrs, in_ids, roles_in, in_states, f, what)


def _signature_roles(ir, node, in_ids, f: _Factor, what, own_rule=False, windows_ok=False):
    """Follow the signature: kept axes keep their role; a window over a grid axis (when the caller found it
    symmetric) passes the role on; anything else that remakes an acted axis is broken or unknown."""
    sig = node.recipe.sig if node.recipe is not None else None
    if sig is None:
        return None if own_rule else ("unknown", f"{what} has no axis signature", None)
    for o, rules in enumerate(sig.outs):
        for k, rule in enumerate(rules):
            refs = [r for r in rule.refs if r.arg < len(in_ids) and r.axis < len(in_ids[r.arg])
                    and f.roles.get(in_ids[r.arg][r.axis])]
            if not refs:
                continue
            role = f.roles[in_ids[refs[0].arg][refs[0].axis]]
            if rule.kind is KEEP and all(r.parts == 1 for r in refs):
                continue
            if rule.kind is DERIVE and rule.how == "reduced":
                continue                                  # kept as size 1: the reduction is judged as one
            if rule.kind is DERIVE and rule.how == "window" and windows_ok:
                if node.axes and o < len(node.axes) and k < len(node.axes[o]):
                    f.roles[node.axes[o][k]] = role
                continue
            if own_rule:
                continue
            if rule.kind is DERIVE and rule.how in ("window", "slice", "piece", "concat", "resize"):
                return ("broken", f"{what} takes a {rule.how} of {f.dims}: positions are no longer interchangeable",
                        "keep the acted axis whole; pool or convolve over other axes")
            if rule.kind in (MERGE, DERIVE) or any(r.parts > 1 for r in refs):
                return ("unknown", f"{what} reshapes the acted axis {f.dims}", None)
    return None


def _params_facing(node, in_ids, f: _Factor):
    """(parameter, face) of the first parameter axis facing an acted axis."""
    for p in node.params:
        for fc in p.faces:
            if fc.side == "in" and fc.index < len(in_ids) and fc.axis < len(in_ids[fc.index]) and \
                    f.roles.get(in_ids[fc.index][fc.axis]):
                return p, fc
            if fc.side == "out" and node.axes and fc.axis < len(node.axes[0]) and f.roles.get(node.axes[0][fc.axis]):
                return p, fc
    return None


def _fixed_varying(node, in_ids, in_states, f: _Factor, what):
    for ids, s in zip(in_ids, in_states):
        if not s.dep and any(f.roles.get(i) for i in ids):
            if node.op in ("add", "sub") and f.family == "set":   # a later sum over the axis could cancel it
                return ("unknown", f"{what} adds a tensor that varies along {f.dims} but is not permuted with it "
                        f"(a positional table?)", None)
            return ("broken", f"{what} combines the input with a tensor that varies along {f.dims} but is not "
                    f"acted on with it (a positional table, a mask over positions)",
                    "drop the positional term, or make it depend only on the input")
    return None


def _set_rule(ir, node, od, attrs, in_ids, roles_in, in_states, f: _Factor, what):
    op = node.op
    traits = od.traits if od is not None else frozenset()
    if f.kind == "cyclic" and (op == "roll" or (op == "conv1d" and _circular_same(attrs) and not any(roles_in[0][:-1]))):
        return _signature_roles(ir, node, in_ids, f, what, windows_ok=True)   # rolls commute with rolls
    hit = _params_facing(node, in_ids, f)
    if hit is not None:
        p, fc = hit
        if fc.side == "in":
            return ("broken", f"{what} has a weight along {f.dims} ({p.name or 'its value'}): it treats the "
                    f"positions of {f.dims} differently",
                    f"mix features, not positions: apply it to an axis other than {f.dims}, or reduce {f.dims} first")
        return ("broken", f"{what} has a parameter along {f.dims} ({p.name or 'its value'}): one value per position",
                f"share it across {f.dims}")
    bad = _fixed_varying(node, in_ids, in_states, f, what)
    if bad is not None:
        return bad
    if attrs.get("causal"):
        return ("broken", f"{what} has a causal mask: each position sees only those before it along {f.dims}",
                "drop `causal=true`, or acted positions cannot be ordered")
    if op in POSITIONAL or "index" in traits:
        return ("broken", f"{what} depends on the order of positions along {f.dims}",
                "order-free ops keep the symmetry: pointwise ops, sums, means, attention without positions")
    sig = node.recipe.sig if node.recipe is not None else None
    verdict = _signature_roles(ir, node, in_ids, f, what)
    if verdict is not None or sig is None:
        return verdict
    return _contractions(node, sig, in_ids, in_states, f, what, traits, pair=False)


def _contractions(node, sig, in_ids, in_states, f: _Factor, what, traits, pair: bool):
    """Contracted and reduced acted axes: fine for symmetric reductions and norms, and for contractions
    between tensors that all carry the axis; with `pair`, a grid's two axes must go together."""
    op = node.op

    def acted(r):
        return r.arg < len(in_ids) and r.axis < len(in_ids[r.arg]) and f.roles.get(in_ids[r.arg][r.axis])

    for group in sig.contracted:
        on = [r for r in group if acted(r)]
        if not on:
            continue
        if op in SYMMETRIC_REDUCE or "reduce" in traits:
            continue
        sides = {r.arg for r in group}
        if len(on) == len(group) and len(sides) > 1 and all(in_states[a].dep for a in sides):
            continue                                      # Σ_n a_n b_n: both acted on alike
        return ("broken", f"{what} sums over {f.dims} against something that is not acted on with it",
                f"contract {f.dims} only between tensors that both carry it, or use sum/mean/max")
    red = [r for r in sig.reduced if acted(r)]
    for r in red:
        if op in SYMMETRIC_REDUCE or "reduce" in traits or "norm" in traits or "pool" in traits or \
                op in ("softmax", "log_softmax"):
            continue
        return ("broken", f"{what} reduces {f.dims} in an order-dependent way", "use sum, mean or max over it")
    if pair:
        for arg, ids in enumerate(in_ids):
            hit = {f.roles[ids[r.axis]] for r in [*red, *(x for g in sig.contracted for x in g)]
                   if r.arg == arg and acted(r)}
            if ("row" in hit) != ("col" in hit):
                one = "rows" if "row" in hit else "columns"
                return ("broken", f"{what} reduces the {one} of the grid but not the other axis: a rotation swaps "
                        "them", "reduce both grid axes together (`mean(x, axes=[H, W])`) or neither")
    return None


def _circular_same(attrs) -> bool:
    from ..ops.registry import tup

    try:
        k, s = tup(attrs["kernel"], 1)[0], tup(attrs["stride"], 1)[0]
        p, d = attrs["padding"], tup(attrs["dilation"], 1)[0]
    except (KeyError, TypeError, Exception):
        return False
    if attrs.get("padding_mode") != "circular" or s != 1:
        return False
    return p == "same" or (isinstance(p, (list, tuple)) and 2 * p[0] == d * (k - 1)) or \
        (isinstance(p, int) and 2 * p == d * (k - 1))


def _divisible(d, s: int, facts) -> bool:
    """Whether the stride s divides the dim d: by value, or by a fact on its symbolic part
    (`ensure S % 2 == 0` makes S - 2 even)."""
    from ..dims import Dim

    if d.is_const:
        return d.value % s == 0
    const = sum(c for mono, c in d.terms if not mono)
    rest = d - const
    return const % s == 0 and facts is not None and facts.divides(Dim.const(s), rest)


def _grid_window(attrs, sizes, conv: bool, facts=None):
    """None when a window op (pooling, a 1x1 convolution) samples the grid symmetrically, else
    (kind, why)."""
    from ..ops.registry import tup

    try:
        k = tup(attrs["kernel"], 2)
        s = tup(attrs.get("stride") if attrs.get("stride") is not None else (1 if conv else attrs["kernel"]), 2)
        p = attrs.get("padding", 0)
        d = tup(attrs.get("dilation", 1), 2) if conv else (1, 1)
    except Exception:
        return ("unknown", "has windows nndsl cannot read")
    if p == "same":
        p = tuple((dd * (kk - 1)) // 2 for kk, dd in zip(k, d))
    elif p == "valid":
        p = (0, 0)
    p = tup(p, 2)
    if attrs.get("ceil_mode"):
        return ("unknown", "rounds its windows up (ceil_mode)")
    if k[0] != k[1] or s[0] != s[1] or p[0] != p[1] or d[0] != d[1]:
        return ("broken", "has different windows along the two grid axes: a rotation swaps them")
    span = d[0] * (k[0] - 1) + 1
    if s[0] == 1:
        return None
    size = sizes[0]
    if _divisible(size + 2 * p[0] - span, s[0], facts):
        return None
    if size.is_const:
        return ("broken", f"samples the grid off-centre: ({size.value} + 2·{p[0]} - {span}) is not a multiple of "
                f"the stride {s[0]}, so its windows are not symmetric under rotation")
    return ("unknown", f"samples the grid symmetrically only when ({size} + 2·{p[0]} - {span}) is a multiple of the "
            f"stride {s[0]}")


def _grid_rule(ir, node, od, attrs, in_ids, roles_in, in_states, f: _Factor, what):
    op = node.op
    traits = od.traits if od is not None else frozenset()
    windows_ok = False
    hit = _params_facing(node, in_ids, f)
    if hit is not None:
        p, fc = hit
        one_by_one = fc.role == "window" and all(p.shape[i] == 1 for i, x in enumerate(p.faces) if x.role == "window")
        if fc.role == "window" and not one_by_one:
            return ("broken", f"{what} has a free kernel over the grid: a convolution is equivariant to "
                    "translations only, rotating its input does not rotate its output",
                    f"use a group convolution: `gconv2d(x, out, kernel=k, group={f.group})`")
        if not one_by_one:
            return ("broken", f"{what} has a weight along the grid ({p.name or 'its value'}): it treats its "
                    "positions differently", "mix channels, not positions")
    bad = _fixed_varying(node, in_ids, in_states, f, what)
    if bad is not None:
        return bad
    if op in POSITIONAL or "index" in traits or op == "roll":
        return ("broken", f"{what} depends on positions in the grid",
                "pointwise ops, 1x1 convolutions, symmetric pooling and group convolutions keep the rotation")
    if "pool" in traits or "conv" in traits:
        rs = roles_in[0]
        nd = 3 if op.endswith("3d") else 1 if op.endswith("1d") else 2
        if "row" in rs or "col" in rs or (nd == 3 and rs[-3]):
            if set(rs[-2:]) != {"row", "col"} or nd == 1:
                return ("broken", f"{what} windows one grid axis without the other", None)
            if op.startswith("adaptive"):
                return ("unknown", f"{what} pools adaptively: its windows are symmetric only for some sizes", None)
            win = dict(attrs)
            if nd == 3:                  # a window over [G, H, W]: trivial over the group axis
                from ..ops.registry import tup

                try:
                    k, st = tup(attrs["kernel"], 3), tup(attrs.get("stride") or attrs["kernel"], 3)
                    pd = tup(attrs.get("padding", 0), 3)
                except Exception:
                    return ("unknown", f"{what} has windows nndsl cannot read", None)
                if rs[-3] and (k[0], st[0], pd[0]) != (1, 1, 0):
                    return ("broken", f"{what} windows the group axis: its orientations are no longer permuted "
                            "whole", "use kernel=[1, k, k]")
                win.update(kernel=list(k[1:]), stride=list(st[1:]), padding=list(pd[1:]))
            v = _grid_window(win, [ir.in_types(node.id)[0].shape[-1]], conv="conv" in traits, facts=f.facts(ir))
            if v is not None:
                if v[0] == "unknown":      # the roles it would pass on, for the numbers to test
                    _signature_roles(ir, node, in_ids, f, what, windows_ok=True)
                return (v[0], f"{what} {v[1]}", "stride 1 with padding (k - 1) / 2, or a size the stride divides "
                        "(`ensure S % 2 == 0`)")
            windows_ok = True
    sig = node.recipe.sig if node.recipe is not None else None
    verdict = _signature_roles(ir, node, in_ids, f, what, windows_ok=windows_ok)
    if verdict is not None or sig is None:
        return verdict
    return _contractions(node, sig, in_ids, in_states, f, what, traits, pair=True)


def _permutations(f: _Factor) -> bool:
    """Whether a `matrices` group acts by permutation matrices (then it permutes the axis like a set group)."""
    for g in f.acts[0].gens:
        for row in g:
            if sorted(row) != [0.0] * (len(row) - 1) + [1.0]:
                return False
        if any(sorted(col) != [0.0] * (len(g) - 1) + [1.0] for col in zip(*g)):
            return False
    return True


def _orthogonal(f: _Factor) -> bool:
    from ..symmetry.groups import orthogonal

    gens = f.acts[0].gens
    return not gens or orthogonal(tuple(tuple(tuple(r) for r in g) for g in gens))


def _linear_rule(ir, node, od, attrs, in_ids, roles_in, in_states, f: _Factor, what):
    """o3/so3 act on coordinates by orthogonal matrices: only linear maps (and dot products) commute."""
    op = node.op
    help_ = (f"a nonlinear block becomes exactly invariant or equivariant as `frame_average(Block(x), "
             f"group={f.group})`; else keep coordinates to sums, scalings by invariants and dot products")
    if f.kind == "e3":
        return ("unknown", f"{what} acts on coordinates that translate: nndsl proves E(n) claims through "
                "`frame_average` only", None)
    touching = [k for k, rs in enumerate(roles_in) if any(rs)]
    sig = node.recipe.sig if node.recipe is not None else None
    if f.kind == "matrices" and sig is not None and not _orthogonal(f) and any(
            f.roles.get(in_ids[r.arg][r.axis]) for g in sig.contracted for r in g
            if r.arg < len(in_ids) and r.axis < len(in_ids[r.arg])):
        return ("unknown", f"{what} contracts coordinates that matrices acted on, which are not orthogonal: a dot "
                "product is not invariant", None)
    if op in ("add", "sub"):
        if attrs.get("scalar") is not None:
            return ("broken", f"{what} adds a constant to every coordinate: a rotation does not commute with it",
                    help_)
        if all(in_states[k].dep and any(roles_in[k]) for k in range(len(roles_in))) and \
                len({tuple(bool(r) for r in rs) for rs in roles_in}) == 1:
            return None
        return ("broken", f"{what} adds a term that is not rotated with {f.dims}", help_)
    if op in ("mul", "div"):
        if len(touching) == 1 and (op == "mul" or touching == [0]):
            return None                                   # scaled by an invariant or a constant
        return ("unknown", f"{what} multiplies coordinates entrywise (a sum over {f.dims} may make it a dot "
                "product)", None)
    if op == "neg" or op in LINEAR_LAYOUT:
        v = _signature_roles(ir, node, in_ids, f, what)
        if v is not None:
            return ("broken", f"{what} splits, slices or merges the coordinates of {f.dims}", help_) \
                if v[0] == "broken" else v
        if sig is not None and any(f.roles.get(in_ids[r.arg][r.axis]) for r in sig.reduced
                                   if r.arg < len(in_ids) and r.axis < len(in_ids[r.arg])):
            return ("broken", f"{what} picks coordinates of {f.dims}", help_)
        return None
    if sig is None:
        return ("unknown", f"{what} has no axis signature", None)
    if op in ("sum", "mean"):
        if any(f.roles.get(in_ids[r.arg][r.axis]) for r in sig.reduced if r.axis < len(in_ids[r.arg])):
            return ("broken", f"{what} sums the coordinates of {f.dims}: that is not invariant under rotations",
                    "dot products of coordinates are invariant: `matmul(x, transpose(x, 1, 2))`")
        return _signature_roles(ir, node, in_ids, f, what)
    if op in ("matmul", "einsum", "linear"):
        hit = _params_facing(node, in_ids, f)
        if hit is not None:
            return ("broken", f"{what} has a weight along {f.dims}: a rotation does not commute with it", help_)
        if any(p.name == "bias" for p in node.params):
            return ("broken", f"{what} adds a bias along the rotated coordinates", "use `bias=false`")
        v = _signature_roles(ir, node, in_ids, f, what)
        if v is not None:
            return v
        return _contractions(node, sig, in_ids, in_states, f, what, od.traits if od else frozenset(), pair=False)
    return ("broken", f"{what} is not linear: it does not commute with rotations of {f.dims}", help_)
