"""Signal-propagation analysis: the predicted statistics of every tensor at init, and what breaks.

Forward, in creation order (a topological order), each node's rule (`OpDef.signal`, or one its traits
imply: nndsl/signal.py) maps its inputs' statistics (q = E[h²], the feature mean, the covariance across
samples) to its outputs'. Weights enter through their init rule's moments (the `init` facet), or the
op's PyTorch default (`OpDef.init_default`). Model inputs are taken as unit-variance noise. Backward,
from the outputs (E[grad²] = 1) to the inputs, each node scales the gradient's second moment by its chi.
Writes the `signal` facet on every node it can say something about, and the warnings:

  W0601  the signal explodes or vanishes (q leaves [1e-2, 1e2]) at a layer
  W0602  a Xavier-family init feeds a ReLU
  W0603  an unclipped shifted ReLU / soft threshold (unstable at init); suggests a clip level
  W0604  a μP model whose readout is neither zero-initialised nor scaled by 1/width

Sizes that are free dims take the value bound with `--dim`, else ASSUME (noted in the report).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Optional

from .. import ops as O
from .. import signal as S
from ..diagnostics import Label, Sink
from ..dims import Dim
from ..facets import attach
from ..facets.signal import Signal
from ..ir import IR

ASSUME = 128                         # the size a free dim takes (sequence length, spatial size, batch)
LOW, HIGH = 1e-2, 1e2                # q outside this range: the signal vanishes / explodes
RELU_LIKE = ("relu", "relu6", "leaky_relu")


@dataclass
class Report:
    assumed: dict = field(default_factory=dict)      # free dim -> the size it was taken as
    rows: list = field(default_factory=list)         # (node id, op, q, chi, grad) for layers


def _feature_axes(ir: IR) -> set:
    """Axis identities that are features (a weight's axis faces them), not batch / sequence / spatial:
    a weighted op's new output axes and the input axes it contracts, and the factors and merges of
    those."""
    feat = set()
    for n in ir.nodes():
        if not n.params or n.recipe is None or not n.axes:
            continue
        sig = n.recipe.sig
        for port, ax in enumerate(sig.outs if sig is not None else ()):
            for i, a in enumerate(ax):
                if a.kind == "new" and port < len(n.axes) and i < len(n.axes[port]):
                    feat.add(n.axes[port][i])
        ins = ir.inputs_of(n.id)
        for g in (sig.contracted if sig is not None else ()):
            for r in g:
                if r.arg < len(ins):
                    u, p = ins[r.arg]
                    un = ir.node(u)
                    if p < len(un.axes) and r.axis < len(un.axes[p]):
                        feat.add(un.axes[p][r.axis])
    return _Lazy(functools.partial(_is_feat, ir, feat, {}))


def _is_feat(ir: IR, feat: set, memo: dict, i, depth=0) -> bool:
    """(A module function, not a closure that calls itself: that would be a reference cycle, and the
    front end runs with the cyclic GC off.)"""
    if i in feat:
        return True
    if i in memo:
        return memo[i]
    memo[i] = False
    info = ir.axes.get(i)
    if info is not None and info.parents and depth < 50:
        memo[i] = all(_is_feat(ir, feat, memo, p, depth + 1) for p in info.parents)
    return memo[i]


class _Lazy:
    def __init__(self, fn):
        self.fn = fn

    def __contains__(self, i):
        return self.fn(i)


def analyse(ir: IR, sink: Optional[Sink] = None, dims: Optional[dict] = None, assume: int = ASSUME) -> Report:
    rep = Report()
    dims = dims or {}
    num_cache: dict = {}

    def num(d: Dim) -> float:
        got = num_cache.get(d)
        if got is None:
            if d.is_const:
                got = float(d.value)
            else:
                m = {}
                for s in d.free_symbols():
                    v = dims.get(s, assume)
                    if s not in dims:
                        rep.assumed[s] = assume
                    m[s] = Dim.const(v)
                try:
                    e = d.subs(m)
                    got = float(e.value) if e.is_const else float(assume)
                except (ValueError, ZeroDivisionError, OverflowError):
                    got = float(assume)
            num_cache[d] = got
        return got

    feats = _feature_axes(ir)
    stats: dict[tuple[str, int], Optional[S.Stat]] = {}
    chis: dict[str, list] = {}
    dphi: dict[str, float] = {}             # activation node -> E[φ'(z)²]
    params_by: dict[str, dict] = {n.id: {p.name: p for p in n.params} for n in ir.nodes() if n.params}
    structured = {n.id: n.facets["structure"] for n in ir.nodes() if "structure" in n.facets}
    for nid, st in structured.items():          # a factored weight: its dense shape gives the fans
        if "weight" not in params_by[nid]:
            from ..recipe import P

            params_by[nid]["weight"] = P("weight", st.dense_shape)

    moments = functools.partial(_moments, ir, structured, params_by)

    for nid in ir.order:
        node = ir.node(nid)
        if not node.outputs:
            continue
        ins = ir.inputs_of(nid)
        in_stats = [stats.get(e) for e in ins]
        mult = node.facets.get("multiplier")
        if mult is not None and in_stats and in_stats[0] is not None:     # the parametrization's input scale
            in_stats[0] = in_stats[0].scaled(mult.input)
        floats = [t.dtype.startswith("float") or t.dtype in ("bfloat16",) for t in node.outputs]
        if node.op in ("input", "block_input"):
            if ins:
                out = [in_stats[0]]
            else:
                out = [S.Stat(1.0, 0.0, 0.0) if floats[0] else None]
            res = S.Result(out, [1.0] * len(ins))
        else:
            od = O.get(node.op)
            rule = None if od is None else od.signal
            if rule is None and od is not None:
                if od.scalar is not None:
                    rule = _activation(od)
                elif "layout" in od.traits:
                    rule = S.same
            if rule is None:
                res = S.Result([None] * len(node.outputs), [None] * len(ins))
            else:
                in_types = [ir.node(u).outputs[p] if p < len(ir.node(u).outputs) else None for u, p in ins]
                a = dict(node.recipe.attrs) if node.recipe is not None else dict(node.attrs)

                def feature(i, axis, ins=ins):
                    if i >= len(ins):
                        return False
                    u, p = ins[i]
                    un = ir.node(u)
                    return p < len(un.axes) and axis < len(un.axes[p]) and un.axes[p][axis] in feats

                def weighted_in(i, ins=ins):
                    return i < len(ins) and ir.node(ins[i][0]).op == "param"

                ctx = S.Ctx(node=node, a=a, ins=[s if (t is not None and t.dtype.startswith("float")) else None
                                               for s, t in zip(in_stats, in_types)],
                            in_shapes=[tuple(num(d) for d in t.shape) if t is not None else () for t in in_types],
                            out_shapes=[tuple(num(d) for d in t.shape) for t in node.outputs],
                            weights=lambda name, nid=nid: moments(nid, name),
                            fans=lambda name, nid=nid: _fans(params_by.get(nid, {}).get(name)),
                            feature=feature, weighted_in=weighted_in)
                try:
                    res = rule(ctx)
                except (ArithmeticError, ValueError, KeyError, IndexError, TypeError):
                    res = S.Result([None] * len(node.outputs), [None] * len(ins))
                if getattr(rule, "dphi", False) and res.chi and res.chi[0] is not None:
                    dphi[nid] = res.chi[0]
        outs = list(res.outs) + [None] * (len(node.outputs) - len(res.outs))
        for port, s in enumerate(outs[:len(node.outputs)]):
            if s is not None and not (floats[port] and all(math.isfinite(v) for v in (s.q, s.mu, s.k))):
                s = None
            stats[(nid, port)] = s
        chis[nid] = list(res.chi) + [None] * (len(ins) - len(res.chi))

    # backward: E[grad²] at each output, relative to the model outputs'
    grad: dict[tuple[str, int], float] = {}
    for o in ir.meta.outputs:
        grad[(o.node, o.port)] = grad.get((o.node, o.port), 0.0) + 1.0
    node_grad: dict[str, float] = {}
    for nid in reversed(ir.order):
        node = ir.node(nid)
        ports = [grad[(nid, p)] for p in range(len(node.outputs)) if (nid, p) in grad]
        if not ports:
            continue
        g = sum(ports) / len(ports)
        node_grad[nid] = g
        ins = ir.inputs_of(nid)
        out0 = stats.get((nid, 0))
        for i, (u, p) in enumerate(ins):
            c = chis.get(nid, [])
            c = c[i] if i < len(c) else None
            if c is None:
                si = stats.get((u, p))
                c = out0.q / si.q if (out0 is not None and si is not None and si.q > 0) else 1.0
            if math.isfinite(c * g):
                grad[(u, p)] = grad.get((u, p), 0.0) + c * g

    # the facet, the per-layer rows, the warnings
    consumers: dict[str, list[str]] = {}
    for nid in ir.order:
        for u, _p in ir.inputs_of(nid):
            consumers.setdefault(u, []).append(nid)
    watch = {u for nid in ir.order if nid in dphi for u, _p in ir.inputs_of(nid)}   # pre-activations
    watch |= {o.node for o in ir.meta.outputs}
    flagged = False
    for nid in ir.order:
        node = ir.node(nid)
        s = stats.get((nid, 0))
        if s is None:
            continue
        chi = None
        od = O.get(node.op)
        if od is not None and "linear" in od.traits and nid in params_by and "weight" in params_by[nid]:
            w = moments(nid, "weight")
            _fi, fo = _fans(params_by[nid].get("weight"))
            act = _next_activation(ir, nid, consumers)
            chi = fo * w[1] * (dphi.get(act, 1.0) if act else 1.0) if w is not None else None
        attach(node, Signal(q=s.q, mu=s.mu, k=s.k, chi=chi, grad=node_grad.get(nid)))
        layer = bool(node.params) or nid in dphi
        if layer:
            rep.rows.append((nid, node.op, s.q, chi, node_grad.get(nid)))
        if sink is not None and nid in watch and not flagged and not (LOW <= s.q <= HIGH) and \
                not _zero_by_rule(node, s.q):
            flagged = True
            what = "explodes" if s.q > HIGH else "vanishes"
            where = "the pre-activation" if nid not in {o.node for o in ir.meta.outputs} else "the output"
            sink.warning("W0601", f"the signal {what} at `{nid}` ({where}): predicted E[h²] = {s.q:.3g} "
                         f"(outside [{LOW:g}, {HIGH:g}])", node.span, node.scope,
                         label=f"E[h²] ≈ {s.q:.3g} here",
                         help="scale this layer's init (e.g. `variance_preserving(act=...)` or "
                              "`kaiming_normal(nonlinearity=\"relu\")`), or add a normalization layer")
    if sink is not None:
        _warn_xavier_relu(ir, sink, consumers)
        _warn_unclipped(ir, sink, stats)
    return rep


def _moments(ir: IR, structured: dict, params_by: dict, nid: str, name: str,
             depth: int = 0) -> Optional[tuple[float, float]]:
    """E[w] and E[w²] of parameter `name` of `nid` (through ties). A module function: a closure that calls
    itself is a reference cycle."""
    if name == "weight" and nid in structured:
        return _structured_moments(ir.node(nid), structured[nid])
    if name == "bias" and nid in structured and "bias" in params_by[nid] and \
            "init" not in params_by[nid]["bias"].facets:     # the runtime's default: U(±1/√fan_in)
        return 0.0, 1.0 / (3.0 * max(1, structured[nid].dense_fan_in))
    p = params_by.get(nid, {}).get(name)
    if p is None:
        return None
    if p.tied_to and depth < 10:
        src, _, pname = p.tied_to.rpartition(".")
        got = _moments(ir, structured, params_by, src, pname, depth + 1)
        if got is not None:
            return got
    f = p.facets.get("init")
    if f is not None and f.m2 is not None:
        return (f.mean or 0.0, f.m2)
    node = ir.node(nid)
    od = O.get(node.op)
    if node.op == "param":
        a = node.recipe.attrs if node.recipe is not None else node.attrs
        fill = a.get("fill")
        if fill is not None:
            return float(fill), float(fill) ** 2
        sd = float(a.get("std", 0.02) or 0.0)
        return 0.0, sd * sd
    if od is not None and od.init_default is not None:
        return od.init_default(p, node.params)
    return None


def _structured_moments(node, st) -> tuple[float, float]:
    """Mean and second moment of the entries of a structured layer's dense weight, zeros included: a
    mask scales the kept entries' by the density; factors give the moments of their product (the init
    pass records them on the factor as the rule's dense-equivalent), or of the runtime's default draws."""
    ps = {p.name: p for p in node.params}
    fan_in = max(1, st.dense_fan_in)
    if st.kind in ("monarch", "lowrank"):
        for p in node.params:
            f = p.facets.get("init")
            lay = p.facets.get("layout")
            if f is not None and f.m2 is not None and lay is not None and lay.of == "weight":
                return f.mean or 0.0, f.m2
        return 0.0, 1.0 / (9.0 * fan_in)          # each factor U(±1/√fan of its block), products summed
    w = ps.get("weight") or ps.get("weight_blocks") or ps.get("weight_packed")
    f = w.facets.get("init") if w is not None else None
    if f is not None and f.m2 is not None:
        mean, m2 = f.mean or 0.0, f.m2
        fam = "uniform" if f.prim == "uniform" else "normal"
    elif st.kind == "block" and "weight_blocks" in ps:
        mean, m2, fam = 0.0, 1.0 / (3.0 * max(1.0, fan_in * st.density)), "uniform"
    else:
        mean, m2, fam = 0.0, 1.0 / (3.0 * fan_in), "uniform"        # PyTorch's kaiming_uniform(a=√5)
    return mean * st.density, m2 * st.energy_of(fam)


def _fans(p) -> tuple[int, int]:
    if p is None:
        return 1, 1
    from ..init import Shape

    return Shape(tuple(p.shape), p.fan_in, p.fan_out).fans()


_PASS = ("dropout", "drop_path", "identity", "reshape", "rearrange", "flatten", "permute", "transpose",
         "block_input")


def _next_activation(ir: IR, nid: str, consumers: dict, depth: int = 0) -> Optional[str]:
    """The pointwise activation a layer's output goes through first (past dropout and layout ops)."""
    for c in consumers.get(nid, ()):
        n = ir.node(c)
        od = O.get(n.op)
        if od is not None and od.scalar is not None:
            return c
        if n.op in _PASS and depth < 20:
            got = _next_activation(ir, c, consumers, depth + 1)
            if got:
                return got
    return None


def _activation(od):
    def rule(c: S.Ctx) -> S.Result:
        x = c.ins[0] if c.ins else None
        if x is None:
            return S.Result([None], [None])
        a = c.a
        out, d2 = S.pointwise((od.name, tuple(sorted((k, str(v)) for k, v in a.items()))),
                              lambda v: od.scalar(v, a), x)
        return S.Result([out], [d2])
    rule.dphi = True
    return rule


def _act_name(n) -> str:
    if n.op == "activation":
        a = n.recipe.attrs if n.recipe is not None else n.attrs
        return str(a.get("fn", ""))
    return n.op


def _warn_xavier_relu(ir: IR, sink: Sink, consumers: dict) -> None:
    for n in ir.nodes():
        w = next((p for p in n.params if p.name == "weight"), None)
        f = w.facets.get("init") if w is not None else None
        if f is None or not f.rule.startswith("xavier"):
            continue
        act = _next_activation(ir, n.id, consumers)
        if act is None or _act_name(ir.node(act)) not in RELU_LIKE:
            continue
        gain = f.args.get("gain", 1.0)
        if isinstance(gain, (int, float)) and gain >= 1.3:      # the user already corrected it with a gain
            continue
        an = ir.node(act)
        sink.warning("W0602", f"`{f.rule}` initialises `{f.path}`, which feeds a ReLU: Xavier keeps the variance "
                     f"of a linear layer, a ReLU halves it, so the signal shrinks by 2x per layer",
                     n.span, n.scope, label=f"{f.rule} here",
                     secondary=[Label(span=an.span, message="the ReLU")] if an.span else [],
                     help="use `kaiming_normal(nonlinearity=\"relu\")` or `variance_preserving(act=\"relu\")`, "
                          "or `xavier_normal(gain=gain(\"relu\"))`")


def _warn_unclipped(ir: IR, sink: Sink, stats: dict) -> None:
    for n in ir.nodes():
        if n.op not in ("shifted_relu", "soft_threshold"):
            continue
        a = n.recipe.attrs if n.recipe is not None else n.attrs
        if a.get("clip") is not None:
            continue
        ins = ir.inputs_of(n.id)
        s = stats.get(ins[0]) if ins else None
        q = s.q if s is not None else 1.0
        clip = suggest_clip(n.op, float(a.get("tau", 0.0)), q)
        sink.warning("W0603", f"`{n.op}` without a `clip` is unstable at init: its variance map has no stable "
                     f"fixed point, so deep stacks of it drive the signal to zero or to infinity", n.span, n.scope,
                     label="unclipped",
                     help=(f"cap it: `{n.op}(..., tau={a.get('tau')}, clip={clip:.3g})` (the largest clip for "
                           f"which, at the critical weight scale, the variance map's slope at the predicted "
                           f"q = {q:.3g} is at most 0.9: a stable fixed point)")
                     if clip is not None else "cap its magnitude with `clip=`")


def suggest_clip(op: str, tau: float, q: float) -> Optional[float]:
    """The largest clip level m (on a grid of 0.05·√q steps up to 6·√q) at which the variance map is
    stable at the layer's predicted q: with the critical weight scale σ_w² = 1/E[φ'(z)²] (gradient
    factor 1), V(q) = σ_w²·E[φ(√q z)²] has slope V'(q) = (d/dq E[φ²]) / E[φ'²] ≤ 0.9. Unclipped, the
    slope is exactly 1 (no stable fixed point: "Deep Neural Network Initialization with Sparsity
    Inducing Activations")."""
    spec = O.get(op)
    sd = math.sqrt(max(q, 1e-12))
    best = None
    for i in range(1, 121):
        m = sd * i / 20.0
        a = {"tau": tau, "clip": m}
        phi = lambda x, a=a: spec.scalar(x, a)            # noqa: E731
        h = 1e-4 * sd
        d2 = S.expect(lambda x: ((phi(x + h) - phi(x - h)) / (2 * h)) ** 2, 0.0, sd)
        if d2 <= 1e-12:
            continue
        up = S.expect(lambda x: phi(x) ** 2, 0.0, sd * math.sqrt(1.01))
        dn = S.expect(lambda x: phi(x) ** 2, 0.0, sd * math.sqrt(0.99))
        if (up - dn) / (0.02 * q) / d2 <= 0.9:
            best = m
    return best


def _zero_by_rule(node, q: float) -> bool:
    """A layer whose weight a rule starts at exactly zero (Fixup's classifier, a LoRA B, `zeros`) outputs
    0 on purpose: not a vanishing signal."""
    if q != 0.0:
        return False
    w = next((p for p in node.params if p.name == "weight"), None)
    f = w.facets.get("init") if w is not None else None
    return f is not None and f.m2 == 0.0
