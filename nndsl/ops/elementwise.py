"""Binary elementwise arithmetic with broadcasting and scalars."""
from __future__ import annotations


from ..types import FLOAT_DTYPES, TensorType
from .. import signal as S
from .registry import pyval, Attr, Lowered, OpDef, OpError, broadcast, prod, register

_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%"}
_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _bound(combine, scale):
    """Bounds for `+` and `*` of non-negative integers: two bounded tensors, or one and an int scalar."""
    def bound(bounds, ins, outs, a):
        sc = a.get("scalar")
        if sc is None:
            return combine(*bounds) if len(bounds) == 2 and None not in bounds else None
        if isinstance(sc, int) and not isinstance(sc, bool) and sc >= 0 and bounds[0] is not None:
            return scale(bounds[0], sc)
        return None
    return bound


_BOUNDS = {
    "add": _bound(lambda a, b: a + b - 1, lambda b, s: b + s),
    "mul": _bound(lambda a, b: (a - 1) * (b - 1) + 1, lambda b, s: (b - 1) * s + 1),
}


def _infix(sym: str):
    """`a <sym> b` in PyTorch, with one side a number (`2 * x`, `x < 0.5`) or not."""
    def lower(c):
        if c.a["scalar"] is not None:
            s = pyval(c.a["scalar"])
            return Lowered(None, f"({s} {sym} {c.args[0]})" if c.a["reverse"] else f"({c.args[0]} {sym} {s})")
        return Lowered(None, f"({c.args[0]} {sym} {c.args[1]})")
    return lower


def _make(name: str):
    sym = _SYMBOL[name]

    def result_dtype(dtype: str, scalar) -> str:
        """PyTorch's type promotion: true division of integers, or an integer tensor with a float
        scalar, gives the default float dtype; a bool tensor with an int scalar gives int64."""
        if dtype in FLOAT_DTYPES:
            return dtype
        if name == "div" or isinstance(scalar, float):
            return "float32"
        if dtype == "bool" and scalar is not None:
            return "int64"
        return dtype

    def infer(ins, a, facts):
        if a["scalar"] is not None:
            if len(ins) != 1:
                raise OpError("E0104", f"`{sym}` with a scalar takes one tensor")
            x = ins[0]
            if x.dtype == "bool" and name == "sub":
                raise OpError("E0208", "`-` with a bool tensor is not defined", arg=0, label="bool tensor",
                              help="invert a mask with `where`, or convert it to numbers first")
            return [x.with_shape(x.shape, x.axis_names()).model_copy(update={"dtype": result_dtype(x.dtype, a["scalar"])})]
        if len(ins) != 2:
            raise OpError("E0104", f"`{name}` takes two tensors, or a tensor and a scalar")
        if ins[0].dtype != ins[1].dtype:
            raise OpError("E0208", f"`{sym}` of {ins[0].dtype} and {ins[1].dtype}",
                          arg_labels={0: ins[0].dtype, 1: ins[1].dtype})
        if name in ("sub", "floordiv", "mod") and ins[0].dtype == "bool":
            raise OpError("E0208", f"`{sym}` of two bool tensors is not defined", arg_labels={0: "bool", 1: "bool"},
                          help="use `logical` ops, or convert to an integer dtype first")
        out = broadcast(ins[0], ins[1], sym)
        return [out.model_copy(update={"dtype": result_dtype(out.dtype, None)})]

    def check(a):
        _number(name, a)
        if name in ("floordiv", "mod") and a["scalar"] == 0 and not a["reverse"]:
            raise OpError("E0111", f"`{sym}` by zero")

    register(OpDef(
        name=name, inputs=("x*",), attrs=(Attr("scalar", "any", None), Attr("reverse", "bool", False)),
        infer=infer, flops=lambda ins, outs, a: prod(outs[0].shape), lower=_infix(sym), check_attrs=check,
        value_bound=_BOUNDS.get(name), signal=S.arith(name),
        traits=frozenset({"pointwise", "elementwise", "parameter_free"}), glyph=sym,
        doc=f"Elementwise `{sym}` with broadcasting; one side may be a number.",
    ))


for _n in _SYMBOL:
    _make(_n)


def _make_cmp(name: str):
    sym = _CMP[name]

    def infer(ins, a, facts):
        if a["scalar"] is not None:
            if len(ins) != 1:
                raise OpError("E0104", f"`{sym}` with a number takes one tensor")
            x = ins[0]
            if x.dtype == "bool" and sym not in ("==", "!="):
                raise OpError("E0208", f"`{sym}` of a bool tensor is not defined", arg=0, label="bool tensor")
            return [TensorType.make(x.shape, "bool", x.axis_names())]
        if len(ins) != 2:
            raise OpError("E0104", f"`{name}` takes two tensors, or a tensor and a number")
        if ins[0].dtype != ins[1].dtype:
            raise OpError("E0208", f"`{sym}` of {ins[0].dtype} and {ins[1].dtype}",
                          arg_labels={0: ins[0].dtype, 1: ins[1].dtype})
        out = broadcast(ins[0], ins[1], sym)
        return [TensorType.make(out.shape, "bool", out.axis_names())]

    register(OpDef(
        name=name, inputs=("x*",), attrs=(Attr("scalar", "any", None), Attr("reverse", "bool", False)),
        infer=infer, flops=lambda ins, outs, a: prod(outs[0].shape), lower=_infix(sym),
        check_attrs=lambda a: _number(name, a),
        traits=frozenset({"pointwise", "elementwise", "parameter_free", "comparison"}), glyph=sym,
        doc=f"Elementwise `{sym}` with broadcasting, giving a bool tensor (a mask); one side may be a number.",
    ))


def _number(name, a):
    s = a["scalar"]
    if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float))):
        raise OpError("E0106", f"`scalar` of `{name}` must be a number, got {type(s).__name__}")


for _n in _CMP:
    _make_cmp(_n)

