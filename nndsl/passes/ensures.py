"""Evaluate the `ensure` statements that need shapes or parameter counts."""
from __future__ import annotations

from ..diagnostics import Abort, Sink
from ..dims import Dim
from ..elaborate import Binding, Deferred, Elaborator, Reported, Scope, Undecidable, _explain
from ..ir import IR
from ..syntax import ast as A
from ..values import TensorVal, decode
from .shapes import ShapeContext, _strip


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


class _PostEval(Elaborator):
    def __init__(self, ir: IR, ctx: ShapeContext, scope_path: str):
        super().__init__(prog=None, sink=Sink())
        self.ir_ = ir
        self.ctx = ctx
        self.scope_path = scope_path

    def _tensor(self, v) -> "object":
        n = self.ir_.node(v.node)
        if v.port >= len(n.outputs):
            raise Reported()
        return n.outputs[v.port]

    def _builtin(self, fname, e, scope, ensure):
        if fname in ("shape", "rank"):
            args = [self.ev(a.value, scope, None, True, ensure) for a in e.args]
            if len(args) != 1 or not isinstance(args[0], TensorVal):
                self.fail("E0106", f"`{fname}` takes one tensor", e.span)
            t = self._tensor(args[0])
            if fname == "rank":
                return t.rank
            return [d.value if d.is_const else d for d in t.shape]
        return super()._builtin(fname, e, scope, ensure)

    def _name(self, e, scope, ensure):
        if e.id == "params" and scope.lookup("params") is None:
            return param_count(self.ir_, self.scope_path)
        return super()._name(e, scope, ensure)


def _is_fact(e) -> bool:
    """A statement about free dims that holds by assumption until the dims are bound: a divisibility
    fact (`D % heads == 0`) or a bound (`T <= n_ctx`, `H >= 1`). Bound with `--dim`, it is checked."""
    if not isinstance(e, A.Compare):
        return False
    if e.op == "==" and isinstance(e.left, A.BinOp) and e.left.op == "%":
        return True
    return e.op in ("<", "<=", ">", ">=")


def check_ensures(ir: IR, ctx: ShapeContext, sink: Sink) -> None:
    with ctx.facts.activate():
        for chk in ir.meta.ensures:
            ev = _PostEval(ir, ctx, chk.scope)
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
                    continue  # a divisibility fact on free dims: assumed, and used by the checker
                sink.error("E0206", "ensure cannot be proved for every size of the free dims", chk.span,
                           label="undecided", notes=[_strip(n) for n in _explain(chk.expr, ev, scope)],
                           help="bind the dims with `--dim`, or state a simpler fact")
                continue
            if v is True:
                continue
            if v is False:
                notes = [_strip(n) for n in _explain(chk.expr, ev, scope)]
                sink.error("E0206", "ensure failed", chk.span, label="this is false", notes=notes)
            else:
                sink.error("E0106", "`ensure` needs a condition", chk.span)
    sink.context = ""
