"""The init pass: for every parameter, the most specific init rule declared for it, evaluated with the
parameter's fans, checked against its shape and lowered to what the module will do. Writes the `init`
facet (nndsl/facets/init.py); a parameter no rule names keeps PyTorch's default initialisation.

Most specific wins, in this order: a rule on the statement that created the layer beats a block-level
one; among block-level rules the innermost block wins; then a key naming the layer itself (`fc.weight`,
`fc.*`) beats one naming its op kind and parameter (`linear.weight`), which beats one naming the
parameter (`weight`, `*.weight`), which beats one naming the op kind (`linear.*`), which beats `*`;
among equals the later declaration wins.
"""
from __future__ import annotations

import weakref

import difflib
import hashlib
import math

from ..diagnostics import Abort, Diagnostic, Label, Sink
from ..dims import Dim
from ..evaluate import REQUIRED as SLOT_REQUIRED
from ..evaluate import Binding, Evaluator, Reported, Scope, Slot, Undecidable, bind_call
from ..facets import attach
from ..facets.init import Init
from ..init import FROZEN, INIT_NAMES, REQUIRED, RULES, TOPOLOGY_NAMES, Shape, lower, moments
from ..ir import IR, InitDecl
from ..syntax import ast as A
from ..values import decode

FREE = "value"          # the key of a free parameter's own value (`pos = param([T, D]) init { value: ... }`)


def param_path(node_id: str, name: str) -> str:
    """A parameter's name in the state dict."""
    return f"{node_id}.{name}" if name else node_id


def salt(path: str) -> int:
    """The seed salt of a parameter: from its name only, so other changes to the spec leave it alone."""
    return int.from_bytes(hashlib.sha256(path.encode("utf-8")).digest()[:8], "little") & (2 ** 62 - 1)


class _Host:
    """The evaluator's host for rule arguments: numbers, block parameters, fans, `sqrt`, `gain(...)`."""

    def __init__(self):
        self.ev = Evaluator(weakref.proxy(self))   # no cycle: freed by reference counting (compiler._no_gc)

    def missing(self, e: A.Name, scope: Scope, ensure: bool):
        extra = " (`width` needs a model parameter named width, D, d_model, hidden, dim or n_embd)" \
            if e.id == "width" else ""
        self.ev.fail("E0101", f"unknown name `{e.id}` in an init rule", e.span, label="not found",
                     help=f"rules may use {', '.join(INIT_NAMES)}, the block's parameters and numbers{extra}")

    def call(self, e: A.Call, scope: Scope, name, ensure: bool):
        if self.ev.is_builtin(e):
            return self.ev.builtin(e.func.id, e, scope, ensure)
        if isinstance(e.func, A.Name) and e.func.id == "gain":
            from ..init import NONLINEARITIES, calculate_gain

            vals = [self.ev.ev(a.value, scope, None, const=True, ensure=True) for a in e.args]
            if not vals or not isinstance(vals[0], str) or vals[0] not in NONLINEARITIES:
                self.ev.fail("E0502", "`gain` takes a nonlinearity name and an optional slope", e.span,
                             help=f"e.g. gain(\"relu\"); names: {', '.join(NONLINEARITIES)}")
            slope = vals[1] if len(vals) > 1 else None
            return calculate_gain(vals[0], slope)
        self.ev.fail("E0115", "an init rule's arguments are numbers: a layer cannot be created here", e.span)

    def pipe(self, e, scope: Scope, name):
        self.ev.fail("E0115", "a pipeline cannot be used in an init rule", e.span)

    def tensor_op(self, op, tensors, attrs, name, scope, span, arg_spans):
        self.ev.fail("E0115", "tensor arithmetic cannot be used in an init rule", span)

    def shape_of(self, t):
        raise Reported()


def _specificity(d: InitDecl, node) -> int:
    """A layer's own name beats an op kind; a named parameter beats any."""
    named = d.op is not None and d.op == node.local and d.op != node.op
    return (2 if d.param is not None else 0) + (4 if named else 1 if d.op is not None else 0)


def _key_text(d: InitDecl) -> str:
    return ".".join(x or "*" for x in (d.op, d.param)) if d.op is not None else (d.param or "*")


def resolve_inits(ir: IR, sink: Sink) -> None:
    if not ir.meta.inits:
        return
    from ..init import USER_ACTS

    token = USER_ACTS.set(ir.meta.acts)
    try:
        _resolve(ir, sink)
    finally:
        USER_ACTS.reset(token)


def select(ir: IR, decls: list, accept, used: set[int]):
    """Per parameter that `accept(node, p)` admits, the most specific declaration naming it (see the
    module's docstring): yields (node, parameter, declaration). Adds the order of every declaration that
    matched some parameter to `used`. Init rules and storage rules (passes/sparsity.py) pick alike."""
    # index: (clause or block scope) -> (op or layer, parameter) -> the latest declaration with that key
    # (among equal keys in one place the later wins) and every declaration sharing it; a parameter then
    # looks up a handful of keys in the clauses that made its layer and in the blocks around it
    table: dict[tuple, dict[tuple, list]] = {}
    groups: dict[str, list[int]] = {}
    for d in decls:
        where = ("clause", d.group) if d.nodes is not None else ("block", d.scope)
        if d.nodes is not None and where not in table:
            for nid in d.nodes:
                groups.setdefault(nid, []).append(d.group)
        slot = table.setdefault(where, {}).setdefault((d.op, d.param), [d, []])
        if d.order > slot[0].order:
            slot[0] = d
        slot[1].append(d.order)
    for node in ir.nodes():
        if not node.params:
            continue
        places = [("clause", g) for g in groups.get(node.id, ())] + \
                 [("block", s) for s in ir.ancestors(node.scope)] + [("block", "")]
        ops = {node.op, node.local, None}
        for p in list(node.params):
            if not accept(node, p):
                continue
            lay = p.facets.get("layout")
            pname = (lay.of if lay is not None and lay.of else p.name) or FREE
            best = None
            for where in places:
                t = table.get(where)
                if t is None:
                    continue
                for op in ops:
                    for par in (pname, None):
                        slot = t.get((op, par))
                        if slot is None:
                            continue
                        used.update(slot[1])
                        d = slot[0]
                        rank = (d.nodes is not None, len(d.scope.split(".")) if d.scope else 0,
                                _specificity(d, node), d.order)
                        if best is None or rank > best[0]:
                            best = (rank, d)
            if best is not None:
                yield node, p, best[1]


def _resolve(ir: IR, sink: Sink) -> None:
    decls = ir.meta.inits
    used: set[int] = set()          # declarations that matched some parameter
    failed: set[int] = set()
    cache: dict = {}
    host = _Host()
    model = _model_names(ir, decls)
    for node, p, d in select(ir, decls, lambda node, p: p.kind == "param" and p.tied_to is None, used):
        if d.order in failed:
            continue
        pos = node.facets.get("residual")
        st = node.facets.get("structure")
        dims, fi, fo = tuple(p.shape), p.fan_in, p.fan_out
        if st is not None:                  # the rule sees the dense weight, its fans times the energy kept
            fam = "uniform" if _rule_name(d.rule) in UNIFORM_RULES else "normal"
            e = st.energy_of(fam)
            dims = st.dense_shape
            fi, fo = max(1, round(st.dense_fan_in * e)), max(1, round(st.dense_fan_out * e))
        shape = Shape(dims, fi, fo) if pos is None else \
            Shape(dims, fi, fo, pos.branch_depth, pos.last, pos.readout, model.get("branches", 0))
        key = (d.order, shape)
        got = cache.get(key)
        if got is None:
            try:
                got = cache[key] = _evaluate(d, d.rule, shape, host, node, p, model)
            except Abort as a:
                sink.add(a.diagnostic, d.scope)          # with the call chain of the declaring block
                failed.add(d.order)
                continue
            except Reported:
                failed.add(d.order)
                continue
        rule, args, std, prim, mom, frozen = got
        path = param_path(node.id, p.name)
        if st is not None and p.name != "weight":
            try:
                prim = _structured_prim(rule, std, prim, mom, st, p, node, d)
            except Abort as a:
                sink.add(a.diagnostic, d.scope)
                failed.add(d.order)
                continue
            if prim is None:
                continue                    # this factor keeps the layer's default (the other one is zero)
            if st.kind in ("monarch", "lowrank"):        # the factor's own std; m2 stays the product's
                std = prim[1]["std"] if prim[0] == "normal" else 0.0
        if frozen:
            p.trainable = False
        attach(p, Init(rule=rule, args=args, declared_at=f"{d.span.file}:{d.span.line}", key=_key_text(d),
                       std=std, mean=mom[0] if mom else None, m2=mom[1] if mom else None,
                       seed=salt(path), path=path, prim=prim[0] if prim else "",
                       prim_args=prim[1] if prim else {}, frozen=frozen))
    from .. import ops as O

    for d in decls:
        if d.order not in used and d.order not in failed:
            what = "the layers this statement creates" if d.nodes is not None else "this block"
            near = difflib.get_close_matches(d.op, O.all_names(), n=1) if d.op and O.get(d.op) is None else []
            sink.warning("W0501", f"init key `{_key_text(d)}` matches no parameter of {what}", d.key_span,
                         d.scope, label="matches nothing",
                         help=f"did you mean `{near[0]}`?" if near else
                         "keys name a layer or an op kind, then a parameter (`weight`, `bias`); a free "
                         "parameter's own value is `value`")


UNIFORM_RULES = ("uniform", "xavier_uniform", "kaiming_uniform", "lora")


def _rule_name(e) -> str:
    while isinstance(e, A.Call) and isinstance(e.func, A.Name) and e.func.id == FROZEN and e.args:
        e = e.args[0].value
    if isinstance(e, A.Call) and isinstance(e.func, A.Name):
        return e.func.id
    return e.id if isinstance(e, A.Name) else ""


def _structured_prim(rule, std, prim, mom, st, p, node, d):
    """What a rule declared for a structured weight does to one stored tensor: blocks take the rule's
    draws (with the fans of the dense weight times the density); each of two factors gets a zero-mean
    normal whose products have the rule's variance (`factor_std`). A zero rule zeroes the factor applied
    last (L, U) and leaves the other at its default, so the layer starts at zero but still learns."""
    from ..sparsity import factor_std

    if st.kind in ("block", "symmetric"):       # the stored entries are entries of the dense weight
        if prim is not None and prim[0] not in ("normal", "uniform", "trunc_normal", "fill"):
            raise Abort(Diagnostic(code="E0503", message=f"`{rule}` cannot initialise the stored entries of "
                                   f"`{node.id}` ({st.kind}): use a rule with a distribution", span=d.span))
        return prim
    if prim is not None and prim[0] == "fill" and prim[1]["value"] == 0.0:
        return prim if p.name in ("weight_l", "weight_u") else None
    if std is None or mom is None or abs(mom[0]) > 0.0 or prim is None or prim[0] not in ("normal", "uniform",
                                                                                          "trunc_normal"):
        raise Abort(Diagnostic(code="E0503", message=f"`{rule}` cannot initialise the factors of `{node.id}` "
                               f"({st.kind}): rules with a zero-mean distribution can (each factor gets a normal "
                               "whose products have its variance), and `zeros`", span=d.span))
    return "normal", {"mean": 0.0, "std": factor_std(std, st.paths)}


def decl_scope(d: InitDecl) -> Scope:
    """The names a declared rule may use from the block that declared it (its parameters)."""
    scope = Scope(path=d.scope, file=d.span.file)
    for k, v in d.env.items():
        val = decode(v)
        if isinstance(val, Dim) and val.is_const:
            val = val.value
        scope.names[k] = Binding(val, d.span, "param", True)
    return scope


def bind_rule(fname: str, params, types: dict, args, scope: Scope, ev, span, code: str, free_help: str) -> dict:
    """A rule call's arguments evaluated (constants only) and bound to its parameters `params` ((name,
    default) pairs; REQUIRED marks a required one) with their `types` (number, int, str; a trailing `?`
    admits None). Init rules and sparsity rules bind alike; errors are `code` diagnostics."""
    pos, kw = [], {}
    for a in args:
        try:
            v = ev.ev(a.value, scope, None, const=True, ensure=True)     # ensure: calls reach the host (gain)
        except Undecidable:
            raise Abort(Diagnostic(code=code, message="this argument depends on a free dim", span=a.value.span,
                                   help=free_help)) from None
        if isinstance(v, Dim):
            if not v.is_const:
                raise Abort(Diagnostic(code=code, message="this argument depends on a free dim",
                                       span=a.value.span, help=free_help))
            v = v.value
        if a.name is None:
            pos.append((v, a.value.span))
        else:
            kw[a.name] = (v, a.span)

    def coerce_for(name):
        want = types.get(name, "number")
        optional = want.endswith("?")
        want = want.rstrip("?")

        def coerce(v, sp):
            if v is None and optional:
                return v
            ok = isinstance(v, str) if want == "str" else (isinstance(v, int) and not isinstance(v, bool)) \
                if want == "int" else (isinstance(v, (int, float)) and not isinstance(v, bool))
            if not ok or (want == "number" and not math.isfinite(v)):
                raise Abort(Diagnostic(code=code, message=f"`{name}` of `{fname}` must be a "
                                       f"{'finite number' if want == 'number' else want}, got {v!r}"[:200], span=sp))
            return v
        return coerce

    def fail(_code, msg, sp, label=""):
        raise Abort(Diagnostic(code=code, message=msg, span=sp, label=label))

    slots = [Slot(n, coerce_for(n), SLOT_REQUIRED if dflt is REQUIRED else dflt) for n, dflt in params]
    sig = ", ".join(n if dflt is REQUIRED else f"{n}={dflt}" for n, dflt in params)
    return bind_call(fname, slots, pos, kw, span, fail=fail,
                     too_many=lambda n: fail(code, f"`{fname}` takes {n} argument{'s' if n != 1 else ''}: "
                                             f"{fname}({sig})", span),
                     missing=lambda s: fail(code, f"`{fname}` needs `{s.name}`: {fname}({sig})", span),
                     unknown=lambda k, sp: fail(code, f"`{fname}` has no argument `{k}`: {fname}({sig})", sp,
                                                f"not an argument of `{fname}`"))


def _names(e) -> set[str]:
    """Every name and called name in a rule's expression."""
    out: set[str] = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, A.Name):
            out.add(x.id)
        elif isinstance(x, A.Node):
            for k in A.fields_of(x):
                stack.append(getattr(x, k))
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
    return out


def _model_names(ir: IR, decls) -> dict:
    """`depth`, `branches` (from the residual structure, computed only when a rule needs it) and
    `width` (the model's width parameter, as the parametrization reads it)."""
    from .parametrize import model_width

    names: set[str] = set()
    for d in decls:
        names |= _names(d.rule)
    out: dict = {}
    if names & {*TOPOLOGY_NAMES, "fixup"}:
        from .topology import topology

        t = topology(ir)
        out.update(depth=t.depth, branches=t.branches)
    if "width" in names:
        w = model_width(ir)
        if w is not None:
            out["width"] = w
    return out


def _evaluate(d: InitDecl, e, shape: Shape, host: _Host, node, p, model: dict):
    if isinstance(e, A.Call) and isinstance(e.func, A.Name) and e.func.id == FROZEN or \
            isinstance(e, A.Name) and e.id == FROZEN:
        args = e.args if isinstance(e, A.Call) else []
        if len(args) > 1 or args and args[0].name is not None:
            raise Abort(Diagnostic(code="E0502", message="`frozen` takes one rule: `frozen(normal(0, 1))`, or none "
                                   "(the layer's default)", span=e.span))
        if not args:
            return ("default", {}, None, None, None, True)
        got = _evaluate(d, args[0].value, shape, host, node, p, model)
        return got[:5] + (True,)
    if isinstance(e, A.Name):
        fname, fspan, args = e.id, e.span, []
    elif isinstance(e, A.Call) and isinstance(e.func, A.Name):
        fname, fspan, args = e.func.id, e.func.span, e.args
    else:
        raise Abort(Diagnostic(code="E0501", message="an init rule is a rule name or a call: `zeros`, "
                               "`normal(0, 0.02)`", span=e.span, label="not a rule"))
    rule = RULES.get(fname)
    if rule is None:
        near = difflib.get_close_matches(fname, list(RULES), n=1)
        raise Abort(Diagnostic(code="E0501", message=f"unknown init rule `{fname}`", span=fspan,
                               label="no rule of this name",
                               help=f"did you mean `{near[0]}`?" if near else f"rules: {', '.join(sorted(RULES))}"))
    scope = decl_scope(d)
    fi, fo = shape.fans()
    for k, v in model.items():                          # the block's own parameters shadow these
        scope.names.setdefault(k, Binding(v, d.span, "param", True))
    if "depth" in model:
        scope.names.setdefault("branch_depth", Binding(shape.branch_depth, d.span, "param", True))
    for k, v in (("fan_in", fi), ("fan_out", fo), ("numel", shape.numel)):
        scope.names[k] = Binding(v, d.span, "param", True)
    bound = bind_rule(fname, rule.args, rule.types, args, scope, host.ev, e.span, "E0502",
                      "bind the dim with `--dim`, or use `fan_in`/`fan_out`")
    if rule.check is not None:
        msg = rule.check(bound, shape)
        if msg:
            pl = param_path(node.id, p.name)
            raise Abort(Diagnostic(code="E0503", message=f"`{fname}` does not fit `{pl}`: {msg}", span=e.span,
                                   label=f"applied to {pl} {list(shape.dims)}",
                                   secondary=[Label(span=node.span, message="the layer")] if node.span else []))
    std = rule.std(bound, shape)
    prim = lower(fname, bound, shape)
    nums = ([std] if std is not None else []) + (list(prim[1].values()) if prim else [])
    if not all(math.isfinite(v) for v in nums):
        pl = param_path(node.id, p.name)
        raise Abort(Diagnostic(code="E0503", message=f"`{fname}` gives `{pl}` non-finite values", span=e.span,
                               label="overflows", help="use smaller arguments"))
    args_out = {k: v for k, v in bound.items()}
    return fname, args_out, (float(std) if std is not None else None), prim, moments(fname, bound, shape), False

