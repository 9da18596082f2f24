"""Evaluate the `ensure` statements that need shapes or parameter counts."""
from __future__ import annotations

import weakref

from ..diagnostics import Abort, Sink
from ..dims import Dim
from ..evaluate import Binding, Deferred, Evaluator, Reported, Scope, Undecidable, explain
from ..ir import IR
from ..syntax import ast as A
from ..values import TensorVal, decode
from ..dims import display as _strip
from .shapes import ShapeContext


def param_count(ir: IR, scope: str = "", kinds=("param",), trainable_only: bool = False) -> int:
    """Parameters under a scope (an instance path), counting tied parameters once."""
    total = 0
    prefix = scope + "." if scope else ""
    for n in ir.nodes():
        if scope and not (n.id.startswith(prefix) or n.scope == scope):
            continue
        for p in n.params:
            if p.kind in kinds and p.tied_to is None and (p.trainable or not trainable_only):
                total += p.numel
    return total


class _AfterShapes:
    """The evaluator's host once shapes are known: `shape(t)`, `rank(t)` and `params` have values, and
    nothing creates nodes (an `ensure` is a condition)."""

    def __init__(self, ir: IR, scope_path: str, facts):
        self.ir = ir
        self.scope_path = scope_path
        self.ev = Evaluator(weakref.proxy(self), facts=facts)  # no cycle (compiler._no_gc): keep the host

    def shape_of(self, v: TensorVal):
        n = self.ir.node(v.node)
        if v.port >= len(n.outputs):
            raise Reported()       # its producer failed, and said so
        return n.outputs[v.port]

    def missing(self, e: A.Name, scope: Scope, ensure: bool):
        if e.id == "params":
            return param_count(self.ir, self.scope_path)
        self.ev.fail("E0101", f"unknown name `{e.id}`", e.span, label="not found in this scope")

    def call(self, e: A.Call, scope: Scope, name, ensure: bool):
        if self.ev.is_builtin(e):
            return self.ev.builtin(e.func.id, e, scope, ensure)
        self.ev.fail("E0115", "a layer cannot be created in an `ensure`", e.span)

    def pipe(self, e, scope: Scope, name):
        self.ev.fail("E0115", "a pipeline cannot be used in an `ensure`", e.span)

    def tensor_op(self, op, tensors, attrs, name, scope, span, arg_spans):
        self.ev.fail("E0115", "tensor arithmetic cannot be used in an `ensure`", span)


def _is_fact(e) -> bool:
    """A statement about free dims that holds by assumption until the dims are bound: a divisibility
    fact (`D % heads == 0`) or a bound (`T <= n_ctx`, `H >= 1`). Bound with `--dim`, it is checked."""
    if not isinstance(e, A.Compare):
        return False
    if e.op == "==" and isinstance(e.left, A.BinOp) and e.left.op == "%":
        return True
    return e.op in ("<", "<=", ">", ">=")


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _record_bound(ir: IR, e, ev, scope) -> None:
    """`ensure T <= n_ctx` (or `<`, `>=`, `>`, either way round) on a free dim of the model and a number:
    the range it gives the dim, recorded on the IR (`meta.dim_bounds`: name -> [min, max], inclusive) for
    whoever needs it (torch.export's dynamic dims)."""
    if not isinstance(e, A.Compare) or e.op not in _FLIP:
        return
    try:
        a = ev.ev(e.left, scope, None, const=True, ensure=True)
        b = ev.ev(e.right, scope, None, const=True, ensure=True)
    except Exception:                      # noqa: BLE001 - a bound it cannot read is simply not recorded
        return
    op = e.op
    if isinstance(a, (int, Dim)) and not isinstance(a, bool) and isinstance(b, Dim) and not b.is_const:
        a, b, op = b, a, _FLIP[op]
    if not isinstance(a, Dim) or a.symbol_name() is None or a.symbol_name().is_local:
        return
    n = b.value if isinstance(b, Dim) and b.is_const else b if isinstance(b, int) and not isinstance(b, bool) else None
    if n is None:
        return
    lo, hi = ir.meta.dim_bounds.get(a.symbol_name(), [1, None])
    if op in ("<", "<="):
        top = n - 1 if op == "<" else n
        hi = top if hi is None else min(hi, top)
    else:
        lo = max(lo, n + 1 if op == ">" else n)
    ir.meta.dim_bounds[a.symbol_name()] = [lo, hi]


def check_ensures(ir: IR, ctx: ShapeContext, sink: Sink) -> None:
    for chk in ir.meta.ensures:
        host = _AfterShapes(ir, chk.scope, ctx.facts)    # alive while its evaluator runs
        ev = host.ev
        scope = Scope(path=chk.scope, file=chk.span.file)
        for k, v in chk.env.items():
            val = ctx.subst(decode(v))
            if isinstance(val, Dim) and val.is_const:
                val = val.value
            scope.names[k] = Binding(val, chk.span, "param", True)
        sink.context = chk.scope
        try:
            v = ev.ev(chk.expr, scope, None, const=True, ensure=True)
        except Abort as a:
            sink.add(a.diagnostic)
            continue
        except (Reported, Deferred):
            continue
        except Undecidable:
            if _is_fact(chk.expr):
                _record_bound(ir, chk.expr, ev, scope)
                continue  # a divisibility fact on free dims: assumed, and used by the checker
            sink.error("E0206", "ensure cannot be proved for every size of the free dims", chk.span,
                       label="undecided", notes=[_strip(n) for n in explain(chk.expr, ev, scope)],
                       help="bind the dims with `--dim`, or state a simpler fact")
            continue
        if v is True:
            continue
        if v is False:
            notes = [_strip(n) for n in explain(chk.expr, ev, scope)]
            sink.error("E0206", "ensure failed", chk.span, label="this is false", notes=notes)
        else:
            sink.error("E0106", "`ensure` needs a condition", chk.span)
    sink.context = ""


def sample_dims(ir: IR, given: dict | None = None, default: int = 5) -> dict[str, int]:
    """A size for every free dim of the model: `given`, else `default` moved into the range its `ensure`s
    state (`meta.dim_bounds`) and rounded up to what its divisibility facts ask (`S % 2 == 0`)."""
    import math

    from ..dims import parse_dim

    out = dict(given or {})
    need: dict[str, int] = {}
    for num, den in ir.meta.facts:
        n, d = parse_dim(num), parse_dim(den)
        if n.symbol_name() is not None and d.is_const and d.value > 0:
            need[str(n)] = math.lcm(need.get(str(n), 1), d.value)
    for name in ir.meta.free_dims:
        if name in out:
            continue
        lo, hi = ir.meta.dim_bounds.get(name, [1, None])
        v = max(default, lo)
        m = need.get(name, 1)
        v = -(-v // m) * m
        if hi is not None and v > hi:
            v = max(lo, (hi // m) * m)
        out[name] = v
    return out
