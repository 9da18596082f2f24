"""Binary elementwise arithmetic with broadcasting and scalars."""
from __future__ import annotations


from ..dims import Dim
from ..types import FLOAT_DTYPES, TensorType, promote
from .. import signal as S
from .registry import pyval, Attr, Lowered, OpDef, OpError, broadcast, prod, register

_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%", "pow": "**"}
_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _int(sc) -> bool:
    return isinstance(sc, int) and not isinstance(sc, bool)


def _nonneg(r) -> bool:
    return r[0].is_const and r[0].value >= 0


def _range(name: str):
    """Value ranges [lo, hi) of integer arithmetic: two tensors with ranges, or one and an int scalar
    (`reverse`: the scalar on the left)."""
    def rule(ranges, ins, outs, a):
        sc = a.get("scalar")
        if sc is None:
            if len(ranges) != 2 or None in ranges:
                return None
            (al, ah), (bl, bh) = ranges
            if name == "add":
                return al + bl, ah + bh - 1
            if name == "sub":
                return al - (bh - 1), ah - bl
            if name == "mul" and _nonneg(ranges[0]) and _nonneg(ranges[1]):
                return al * bl, (ah - 1) * (bh - 1) + 1
            return None
        r = ranges[0]
        if r is None or not _int(sc):
            return None
        lo, hi = r
        if name == "add":
            return lo + sc, hi + sc
        if name == "sub":
            return (sc - (hi - 1), sc - lo + 1) if a.get("reverse") else (lo - sc, hi - sc)
        if name == "mul":
            return (lo * sc, (hi - 1) * sc + 1) if sc >= 0 else ((hi - 1) * sc, lo * sc + 1)
        if a.get("reverse") or sc <= 0:
            return None
        if name == "floordiv":                     # floor division keeps the order
            return lo.floordiv(sc), (hi - 1).floordiv(sc) + 1
        if name == "mod":                          # PyTorch's remainder has the divisor's sign: [0, sc)
            if _nonneg(r) and hi.is_const and hi.value <= sc:
                return lo, hi
            return Dim.const(0), Dim.const(sc)
        return None
    return rule


_BOUNDS = {n: _range(n) for n in ("add", "sub", "mul", "floordiv", "mod")}


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
            if name == "pow" and not a["reverse"] and x.dtype not in FLOAT_DTYPES and _int(a["scalar"]) \
                    and a["scalar"] < 0:                      # PyTorch refuses it when it runs
                raise OpError("E0208", "an integer tensor to a negative integer power is not defined", arg=0,
                              label=f"{x.dtype} tensor", help=f"write the exponent as a float: `** {a['scalar']}.0`")
            if x.dtype == "bool" and name == "sub":
                raise OpError("E0208", "`-` with a bool tensor is not defined", arg=0, label="bool tensor",
                              help="invert a mask with `where`, or convert it to numbers first")
            return [x.with_shape(x.shape, x.axis_names()).model_copy(update={"dtype": result_dtype(x.dtype, a["scalar"])})]
        if len(ins) != 2:
            raise OpError("E0104", f"`{name}` takes two tensors, or a tensor and a scalar")
        if name in ("sub", "floordiv", "mod", "pow") and ins[0].dtype == ins[1].dtype == "bool":
            raise OpError("E0208", f"`{sym}` of two bool tensors is not defined", arg_labels={0: "bool", 1: "bool"},
                          help="use `logical` ops, or convert to an integer dtype first")
        if name == "sub" and "bool" in (ins[0].dtype, ins[1].dtype):       # PyTorch refuses it too
            k = 0 if ins[0].dtype == "bool" else 1
            raise OpError("E0208", "`-` with a bool tensor is not defined", arg=k, label="bool tensor",
                          help="invert a mask with `where`, or convert it to numbers first")
        out = broadcast(ins[0], ins[1], sym)        # PyTorch's promotion: int64 * float32 is float32
        return [out.model_copy(update={"dtype": result_dtype(promote(ins[0].dtype, ins[1].dtype), None)})]

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
        if "bool" in (ins[0].dtype, ins[1].dtype) and ins[0].dtype != ins[1].dtype and sym not in ("==", "!="):
            k = 0 if ins[0].dtype == "bool" else 1
            raise OpError("E0208", f"`{sym}` of a bool tensor is not defined", arg=k, label="bool tensor")
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

