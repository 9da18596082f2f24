"""Binary elementwise arithmetic with broadcasting and scalars."""
from __future__ import annotations


from .registry import pyval, Attr, Lowered, OpDef, OpError, broadcast, prod, register

_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def _make(name: str):
    sym = _SYMBOL[name]

    def infer(ins, a, facts):
        if a["scalar"] is not None:
            if len(ins) != 1:
                raise OpError("E0104", f"`{sym}` with a scalar takes one tensor")
            return [ins[0]]
        if len(ins) != 2:
            raise OpError("E0104", f"`{name}` takes two tensors, or a tensor and a scalar")
        if ins[0].dtype != ins[1].dtype:
            raise OpError("E0208", f"`{sym}` of {ins[0].dtype} and {ins[1].dtype}",
                          arg_labels={0: ins[0].dtype, 1: ins[1].dtype})
        return [broadcast(ins[0], ins[1], sym)]

    def lower(c):
        if c.a["scalar"] is not None:
            s = pyval(c.a["scalar"])
            return Lowered(None, f"({s} {sym} {c.args[0]})" if c.a["reverse"] else f"({c.args[0]} {sym} {s})")
        return Lowered(None, f"({c.args[0]} {sym} {c.args[1]})")

    register(OpDef(
        name=name, inputs=("x*",), attrs=(Attr("scalar", "any", None), Attr("reverse", "bool", False)),
        infer=infer, flops=lambda ins, outs, a: prod(outs[0].shape), lower=lower,
        traits=frozenset({"pointwise", "elementwise", "parameter_free"}), glyph=sym,
        doc=f"Elementwise `{sym}` with broadcasting; one side may be a number.",
    ))


for _n in _SYMBOL:
    _make(_n)

