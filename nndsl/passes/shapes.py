"""Shape inference: unify block inputs with their declared shapes, run every op's shape rule, fill
edge types, parameters (shapes, weight tying, the dense layout) and FLOPs. Errors become Diagnostics."""
from __future__ import annotations

from typing import Any

from .. import ops as O
from ..diagnostics import Diagnostic, Label, Sink, Span
from ..dims import Dim, Facts, display, parse_dim
from ..facets.layout import DenseLayouts
from ..fastmodel import from_fields, make
from ..ir import IR, Node
from ..recipe import Out, Recipe, default_signature
from ..types import TensorType


class ShapeContext:
    def __init__(self, ir: IR, sink: Sink, dim_overrides: dict[str, int]):
        self.ir = ir
        self.sink = sink
        self.bindings: dict[str, Dim] = {k: Dim.const(v) for k, v in dim_overrides.items()}
        self.bound_at: dict[str, Span] = {}
        self.facts = Facts()
        # shape rule results by (op, input types, attributes, facts); the types are interned (one object
        # per distinct type), so a key names the input types by identity and hashes no shape
        self.memo: dict = {}
        self.int_attrs: dict[str, tuple[str, ...]] = {}    # op -> its attributes of type int
        self.types: dict[TensorType, TensorType] = {}
        self.layouts = DenseLayouts()
        # facts stated in blocks are about block-local dims; as unification binds those to the caller's
        # dims, each fact is carried over (`ensure D % heads == 0` becomes `E % 4 == 0` for the caller)
        self.stated: list[tuple[Dim, Dim]] = []
        self.by_symbol: dict[str, list[int]] = {}
        for a, b in ir.meta.facts:
            num, den = parse_dim(a), parse_dim(b)
            self.facts.add(num, den)
            self.stated.append((num, den))
            for sym in num.free_symbols() | den.free_symbols():
                self.by_symbol.setdefault(sym, []).append(len(self.stated) - 1)

    def intern(self, t: TensorType) -> TensorType:
        return self.types.setdefault(t, t)

    def bind(self, sym: str, value: Dim, span: Span) -> None:
        """Bind a block-local dim to what the call gives it, carrying the facts that mention it."""
        self.bindings[sym] = value
        self.bound_at[sym] = span
        for i in self.by_symbol.get(sym, ()):
            num, den = self.stated[i]
            self.facts.add(num.subs(self.bindings, self.facts), den.subs(self.bindings, self.facts))

    def subst(self, v: Any) -> Any:
        if not self.bindings:         # nothing bound (a model without blocks and --dim): a fresh copy
            return dict(v) if type(v) is dict else v
        if isinstance(v, Dim):
            return v.subs(self.bindings, self.facts)
        if isinstance(v, list):
            return [self.subst(x) for x in v]
        if isinstance(v, tuple):
            return tuple(self.subst(x) for x in v)
        if isinstance(v, dict):
            return {k: self.subst(x) for k, x in v.items()}
        return v


def infer_shapes(ir: IR, sink: Sink, dim_overrides: dict[str, int] | None = None) -> ShapeContext:
    walk = ShapeWalk(ir, sink, dim_overrides)
    for node in ir.nodes():
        walk.visit(node)
    return walk.finish()


class ShapeWalk:
    """The pass node by node (`visit` each node after its producers, `finish` once), so that the passes
    that read what it writes can share one walk over the nodes with it (compiler.node_walk)."""

    def __init__(self, ir: IR, sink: Sink, dim_overrides: dict[str, int] | None = None) -> None:
        self.ctx = ShapeContext(ir, sink, dim_overrides or {})
        self.sink = sink

    def visit(self, node: Node) -> None:
        sink = self.sink
        # what goes wrong here leads back through the calls of the node's instance; a block input's
        # mismatch is shown at the call, so through the calls of the caller
        sink.context = _caller(self.ctx.ir, node.scope) if node.op == "block_input" else node.scope
        try:
            _node(self.ctx, node)
        except O.OpError as err:
            sink.add(_diag(self.ctx, node, err))
        except ZeroDivisionError:
            sink.error("E0111", "division by zero in a shape", node.span)
        sink.context = ""

    def finish(self) -> ShapeContext:
        ctx = self.ctx
        ir = ctx.ir
        # the facts as every later pass and backend sees them: stated, and carried through the calls
        ir.meta.facts = sorted({(str(a), str(b)) for a, b in ctx.facts.pairs})
        # the declared model inputs now carry the --dim bindings
        for mi in ir.meta.inputs:
            mi.type = ir.node(mi.node).outputs[0] if ir.node(mi.node).outputs else mi.type
        return ctx


def _in_types(ir: IR, nid: str) -> list:
    """The types of a node's inputs in port order (None where the producer failed), written on its
    incoming edges too (an edge's type is its producer's output at the edge's port). The producers come
    first in creation order, so their outputs are known: every edge is typed when its consumer is."""
    nodes, items = ir.g._node, []
    for u, keys in ir.g._pred[nid].items():
        outs = nodes[u]["node"].outputs
        for k, data in keys.items():
            a = data["attr"]
            t = outs[a.src_port] if a.src_port < len(outs) else None
            a.__dict__["type"] = t
            items.append((k, t))
    if len(items) > 1:
        items.sort(key=lambda x: x[0])
    return [t for _k, t in items]


def _node(ctx: ShapeContext, node: Node) -> None:
    ir = ctx.ir
    if node.op == "input":
        a = node.attrs
        shape = [ctx.subst(d) for d in a["shape"]]
        node.attrs = dict(a, shape=shape)
        node.outputs = [ctx.intern(TensorType.make(shape, a["dtype"], a["axes"]))]
        node.flops = Dim.const(0)
        return
    ins = _in_types(ir, node.id)
    for t in ins:
        if t is None:
            return  # an upstream node failed and was reported
    if node.op == "block_input":
        _unify(ctx, node, ins[0])
        node.flops = Dim.const(0)
        return
    od = O.get(node.op)
    attrs = ctx.subst(node.attrs)
    ints = ctx.int_attrs.get(od.name)
    if ints is None:
        ints = ctx.int_attrs[od.name] = tuple(at.name for at in od.attrs if at.type == "int")
    for a in ints:
        v = attrs.get(a)
        if isinstance(v, Dim):
            if not v.is_const:
                raise O.OpError("E0203", f"`{a}` of `{od.name}` depends on the free dim `{v}`",
                                help="attributes that size parameters must be known when the spec is checked")
            attrs[a] = v.value
    nd = node.__dict__               # fields this pass computes (the hot loop: no re-validation)
    nd["attrs"] = attrs
    # a shape rule is a pure function of the input types, the attributes and the facts: layers repeated
    # with the same types (every block of a stack) reuse its result; each node gets its own parameters.
    # So is the check of the attributes: equal attributes passed it when the result was stored.
    key = _memo_key(od.name, ins, attrs, ctx.facts)
    hit = ctx.memo.get(key) if key is not None else None
    if hit is None:
        if od.check_attrs is not None:
            od.check_attrs(attrs)
        hit = _rule(ctx, od, ins, attrs)
        if key is not None:
            ctx.memo[key] = hit + (ins,)       # the key's input types stay alive while their ids key it
    attrs, sig, outs, params, fan, flops, layouts = hit[:7]
    nd["outputs"] = list(outs)                 # a list of its own; the types are frozen and shared
    nd["params"] = [_fresh(p, lay) for p, lay in zip(params, layouts)]
    # the resolved attributes are the memo's, shared by the nodes that hit it: read-only (a pass that
    # changes one node's replaces its recipe's dict)
    nd["recipe"] = from_fields(Recipe, {"attrs": attrs, "sig": sig, "fan": fan})
    nd["flops"] = flops
    if node.tie:
        _tie(ctx, node)


def _rule(ctx: ShapeContext, od, ins: list, attrs: dict) -> tuple:
    """What the op's shape rule gives for these inputs: (attributes as resolved, axis signature, output
    types, parameter specs, fan, FLOPs). Raises OpError."""
    res = od.infer(ins, attrs, ctx.facts)
    sig = None
    if type(res) is Out:
        outs, sig = res.types, res.sig
        if res.resolved:
            attrs = {**attrs, **res.resolved}
    else:
        outs = res
    if sig is None:
        sig = default_signature(od, ins, outs)
    for t in outs:
        for d in t.shape:
            if d.is_const and d.value <= 0:
                raise O.OpError("E0201", f"`{od.name}` would produce an empty axis: {t}",
                                label=f"output shape {t}")
            if d.is_const and d.value > 2 ** 40:
                raise O.OpError("E0112", f"`{od.name}` would produce an axis of size {d.value}, beyond 2**40")
        n = 1
        for d in t.shape:
            if not d.is_const:
                break
            n *= d.value
        else:
            if n > 2 ** 40:
                raise O.OpError("E0112", f"`{od.name}` would produce a tensor of {n:.3g} elements, beyond 2**40",
                                label=f"output shape {t}")
    if ctx.facts.pairs:   # `(E // 4) * 4` is `E` under `ensure E % 4 == 0`
        outs = [_simplified(t, ctx.facts) for t in outs]
    if any(t.vmax is not None for t in ins):
        outs = _value_bounds(od, ins, attrs, outs)
    params = od.params(ins, attrs) if od.params else []
    fan = (None, None)
    for p in params:
        if p.numel > 2 ** 36:
            raise O.OpError("E0112", f"parameter `{p.name}` of {p.numel:,} elements is beyond the limit")
        if fan[0] is None and p.fan_in is not None:
            fan = (p.fan_in, p.fan_out)
    flops = od.flops(ins, outs, attrs) if od.flops else Dim.const(0)
    outs = [ctx.intern(t) for t in outs]
    layouts = tuple(ctx.layouts.of(p) for p in params)
    # nodes get copies (_fresh); these stay the memo's
    return dict(attrs), sig, outs, tuple(params), fan, flops, layouts


_SCALARS = (str, int, type(None), Dim)
_PLAIN = frozenset((*_SCALARS, bool, float))


def _memo_key(op: str, ins: list, attrs: dict, facts: Facts):
    """What a shape rule's result depends on, hashable; None when an attribute is not plain data. Input
    types by identity (interned: equal types are one object; the memo keeps them alive), attributes with
    their types (1, 1.0 and True are equal keys in a dict; not here)."""
    types = tuple(map(type, attrs.values()))
    if _PLAIN.issuperset(types):          # scalars only: the common case, no walk
        return op, tuple(map(id, ins)), tuple(attrs.items()), types, len(facts.pairs)
    try:
        items = tuple((k, _frozen(v)) for k, v in attrs.items())
        return op, tuple(map(id, ins)), items, None, len(facts.pairs)
    except TypeError:
        return None


def _frozen(v):
    t = type(v)
    if t in _SCALARS:
        return v
    if t is bool or t is float:
        return t, v                      # 1, 1.0 and True are equal keys in a dict; not here
    if t is list or t is tuple:
        return t, tuple(_frozen(x) for x in v)
    if t is dict:
        return t, tuple((k, _frozen(x)) for k, x in v.items())
    raise TypeError(t)


def _fresh(p, layout):
    """A parameter spec of its own, dense (later passes fill facets and ties per node)."""
    return from_fields(type(p), {**p.__dict__, "facets": {"layout": layout}})


def _simplified(t: TensorType, facts: Facts) -> TensorType:
    shape = tuple(facts.simplify(d) for d in t.shape)
    return t if shape == t.shape else t.model_copy(update={"shape": shape})


UNBOUNDED = Dim.const(2 ** 62)   # computed from bounded values in a way the checker does not follow
_ZERO = Dim.const(0)


def _value_bounds(od, ins, attrs: dict, outs: list) -> list:
    """Value ranges [vmin, vmax) of integer tensors computed from `positions` and `arange`: layout ops keep
    them, ops with a `value_bound` rule compute them from their inputs' ranges (`+`, `-`, `*`, `//` and `%`
    by numbers, `sum`, `max`, `take`); anything else makes them unbounded (which `embedding` and `take`
    refuse). Indices from model inputs carry no range."""
    ranges = [(t.vmin if t.vmin is not None else _ZERO, t.vmax) if t.vmax is not None else None for t in ins]
    r = None
    if "layout" in od.traits:
        if ranges and None not in ranges:
            los, his = [x[0] for x in ranges], [x[1] for x in ranges]
            lo = min(los, key=lambda d: d.value) if all(d.is_const for d in los) else None
            hi = max(his, key=lambda d: d.value) if all(d.is_const for d in his) else sum(his[1:], his[0])
            r = (lo, hi) if lo is not None else None
    elif od.value_bound is not None:
        r = od.value_bound(ranges, ins, outs, attrs)
    if r is None or r[0] is None or r[1] is None or (r[1].is_const and r[1].value > UNBOUNDED.value) or \
            (r[0].is_const and r[0].value < -UNBOUNDED.value):
        r = (-UNBOUNDED, UNBOUNDED)
    return [t.model_copy(update={"vmax": r[1], "vmin": r[0]}) if not t.is_float else t for t in outs]


def index_range(t) -> str | None:
    """Why integer tensor `t` cannot index a table: its values are not followed, or may be negative; None
    when its range is known and non-negative (the caller compares vmax with the table)."""
    if t.vmax is None:
        return None
    if t.vmax.is_const and t.vmax.value >= UNBOUNDED.value:
        return "unbounded"
    if t.vmin is not None and t.vmin.is_const and t.vmin.value < 0:
        return f"negative: they go down to {t.vmin.value}"
    return None


def _tie(ctx: ShapeContext, node: Node) -> None:
    target = ctx.ir.node(node.tie)
    if not target.outputs:        # the tied layer failed and was reported: its parameters are unknown
        return
    span = Span(**node.attrs["tie_span"]) if node.attrs.get("tie_span") else node.span
    theirs = {p.name: p for p in target.params}
    shared = 0
    if node.attrs.get("tie_transposed"):      # `tie=transpose(enc)`: the weight is enc's, transposed
        p = next((x for x in node.params if x.name == "weight"), None)
        q = theirs.get("weight")
        if p is None or q is None or len(q.shape) != 2 or q.shape[::-1] != p.shape:
            got = list(q.shape) if q is not None else "no weight"
            ctx.sink.error("E0114", f"cannot tie `{node.id}.weight` {list(p.shape) if p else []} to the transpose of "
                           f"`{target.id}.weight` ({got})", span,
                           label=f"its transpose would be {list(q.shape[::-1]) if q is not None else 'nothing'}",
                           help="a transposed tie maps back what the tied layer maps: `linear(h, D_in)` after "
                                "`linear(x, D_hidden)`")
            return
        p.tied_to = f"{target.id}.weight" if q.tied_to is None else q.tied_to
        p.tied_transposed = True
        if q.tied_to is not None:
            return _tied_to_tie(ctx, node, target, span)
        return
    for p in node.params:
        q = theirs.get(p.name)
        if q is None or p.kind != "param":
            continue
        if q.shape != p.shape:
            ctx.sink.error("E0114", f"cannot tie `{node.id}.{p.name}` {list(p.shape)} to `{target.id}.{q.name}` "
                           f"{list(q.shape)}: shapes differ", span, label=f"`{target.id}.{q.name}` is {list(q.shape)}")
            return
        p.tied_to = f"{target.id}.{q.name}" if q.tied_to is None else q.tied_to
        if q.tied_transposed:
            return _tied_to_tie(ctx, node, target, span)
        shared += 1
    if not shared:
        ctx.sink.error("E0114", f"`{node.id}` and `{target.id}` have no parameter of the same name to tie", span,
                       notes=[f"`{node.id}` has {', '.join(p.name for p in node.params) or 'no parameters'}; "
                              f"`{target.id}` has {', '.join(theirs) or 'none'}"])


def _tied_to_tie(ctx: ShapeContext, node: Node, target: Node, span) -> None:
    ctx.sink.error("E0114", f"`{target.id}` has a transposed tie itself: tie `{node.id}` to the layer that owns the "
                   "weight", span, help=f"its weight is `{next(p.tied_to for p in target.params if p.tied_to)}`")


def _caller(ir: IR, path: str) -> str:
    inst = ir.meta.instances.get(path)
    return (inst.parent or "") if inst is not None else ""


def _unify(ctx: ShapeContext, node: Node, actual: TensorType) -> None:
    pattern = node.attrs["shape"]
    name = node.attrs["name"]
    arg_span = node.arg_spans[0] if node.arg_spans else node.span
    decl = node.span
    inst = node.scope
    block = ctx.ir.meta.instances[inst].block if inst in ctx.ir.meta.instances else "block"
    k = node.attrs.get("ellipsis")
    vmax = actual.vmax
    shown = [_show(d) for d in pattern]
    if k is not None:
        shown.insert(k, "...")
        if actual.rank < len(pattern):
            ctx.sink.add(Diagnostic(
                code="E0202", message=f"`{block}` expects `{name}` to have at least {len(pattern)} axes, got "
                f"{actual.rank}-d {actual}", span=arg_span, label=f"this is {actual}",
                secondary=[Label(span=decl, message=f"declared as [{', '.join(shown)}]")]))
            return
        # `...` takes the axes the pattern does not name
        rest = actual.rank - len(pattern)
        actual_dims = actual.shape[:k] + actual.shape[k + rest:]
        middle = actual.shape[k:k + rest]
        middle_names = actual.axis_names()[k:k + rest]
        names_all = actual.axis_names()[:k] + actual.axis_names()[k + rest:]
        actual = TensorType.make(actual_dims, actual.dtype, names_all)
    if len(pattern) != actual.rank:
        ctx.sink.add(Diagnostic(
            code="E0202", message=f"`{block}` expects `{name}` to be {len(pattern)}-d, got {actual.rank}-d {actual}",
            span=arg_span, label=f"this is {actual}",
            secondary=[Label(span=decl, message=f"declared as [{', '.join(shown)}]")]))
        return
    if node.attrs["dtype"] != actual.dtype:
        ctx.sink.add(Diagnostic(code="E0208", message=f"`{block}` expects `{name}` as {node.attrs['dtype']}, got "
                                f"{actual.dtype}", span=arg_span, label=f"{actual.dtype} tensor",
                                secondary=[Label(span=decl, message="declared here")]))
        return
    for i, (p, d) in enumerate(zip(pattern, actual.shape)):
        p = ctx.subst(p)
        if p == d:
            continue
        free = sorted(s for s in p.free_symbols() if s.is_local and s not in ctx.bindings)
        if p.symbol_name() is not None and p.symbol_name() in free:
            ctx.bind(p.symbol_name(), d, arg_span)
            continue
        if len(free) == 1:
            sol = _solve_linear(p, free[0], d)
            if sol is not None:
                ctx.bind(free[0], sol, arg_span)
                continue
        pretty = _show(p)
        sec = [Label(span=decl, message=f"`{name}` is declared as [{', '.join(_show(ctx.subst(x)) for x in pattern)}]")]
        syms = [s for s in pattern[i].free_symbols() if s.is_local]
        code, what = ("E0204", f"dim `{syms[0].name}` is bound to {_show(p)} but axis {i} of `{name}` is {d}") \
            if syms else ("E0201", f"axis {i} of `{name}` must be {pretty}, got {d}")
        for s in syms:
            if s in ctx.bound_at and ctx.bound_at[s] != arg_span:
                sec.append(Label(span=ctx.bound_at[s], message=f"`{s.name}` bound to {_show(ctx.bindings[s])} here"))
        ctx.sink.add(Diagnostic(code=code, message=f"`{block}` input `{name}`: {what}", span=arg_span,
                                label=f"this is {actual}", secondary=sec))
        return
    names = [n if n is not None else m for n, m in zip(node.attrs["axes"], actual.axis_names())]
    shape = list(actual.shape)
    if k is not None:
        shape[k:k] = middle
        names[k:k] = middle_names
    out = TensorType.make(shape, actual.dtype, names)
    if vmax is not None:                         # the bound on its values crosses into the block too
        out = out.model_copy(update={"vmax": vmax})
    node.outputs = [ctx.intern(out)]


def _solve_linear(p: Dim, sym: str, d: Dim) -> Dim | None:
    """Solve p(sym) == d for p affine in sym with an exact integer solution."""
    x = Dim.sym(sym)
    c = p.subs({sym: Dim.const(0)})
    a = p.subs({sym: Dim.const(1)}) - c
    if not a.is_const or a.value == 0:
        return None
    if p != a * x + c:
        return None
    rhs = d - c
    if rhs.content() % a.value:
        return None
    return rhs.floordiv(a.value)


def _show(d: Dim) -> str:
    return _strip(str(d))


_strip = display


def _diag(ctx: ShapeContext, node: Node, err: O.OpError) -> Diagnostic:
    ir = ctx.ir
    od_name = node.op
    spans = node.arg_spans
    inputs = ir.inputs_of(node.id)
    sec: list[Label] = []
    primary, label = node.span, err.label
    if err.arg_labels:
        # operands written at one place (a tuple piped into several inputs) share one label
        by_span: dict = {}
        for k in sorted(err.arg_labels):
            if k < len(spans) and spans[k] is not None:
                by_span.setdefault(spans[k], []).append(err.arg_labels[k])
        for i, (sp, texts) in enumerate(by_span.items()):
            text = texts[0] if len(texts) == 1 else " and ".join(texts)
            if i == 0:
                primary, label = sp, text
            else:
                sec.append(Label(span=sp, message=text))
        shown = set()
        for k in sorted(err.arg_labels):
            if k < len(inputs):
                src = ir.node(inputs[k][0])
                if spans[k] is not None and src.span.line != spans[k].line and src.op != "input" \
                        and src.span not in shown:
                    shown.add(src.span)
                    what = f"`{src.binding}`" if src.binding else "this"
                    sec.append(Label(span=src.span, message=f"{what} gets its shape here"))
    elif err.attr is not None and O.attr_span(err, node.attrs, node.attr_spans) is not None:
        primary, label = O.attr_span(err, node.attrs, node.attr_spans)
        sec.append(Label(span=node.span, message=f"in this `{od_name}`"))
    elif err.arg is not None and err.arg < len(spans) and spans[err.arg] is not None:
        primary = spans[err.arg]
        if not label and err.arg < len(inputs):
            label = f"this is {ir.node(inputs[err.arg][0]).outputs[inputs[err.arg][1]]}"
        sec.append(Label(span=node.span, message=f"in this `{od_name}`"))
    notes = [_strip(n) for n in err.notes]
    return Diagnostic(code=err.code, message=_strip(err.message), span=primary, label=_strip(label or ""),
                      secondary=sec, notes=notes, help=err.help and _strip(err.help))
