"""Dense layers and embeddings."""
from __future__ import annotations

from ..dims import Dim
from ..types import TensorType
from .registry import Attr, Lowered, OpDef, OpError, ParamSpec, concrete, need_float, prod, register


def _linear_infer(ins, a, facts):
    x = ins[0]
    if x.rank < 1:
        raise OpError("E0202", "linear expects at least a 1-d input", arg=0)
    need_float(x, "linear")
    return [TensorType.make(x.shape[:-1] + (Dim.const(a["out"]),), x.dtype, x.axis_names()[:-1] + (None,))]


def _linear_params(ins, a):
    fin = concrete(ins[0].shape[-1], "the input features of `linear`")
    ps = [ParamSpec("weight", (a["out"], fin))]
    if a["bias"]:
        ps.append(ParamSpec("bias", (a["out"],)))
    return ps


def _linear_lower(c):
    fin = c.ins[0].shape[-1].value
    bias = "" if c.a["bias"] else ", bias=False"
    return Lowered(f"nn.Linear({fin}, {c.a['out']}{bias})", f"{c.m}({c.args[0]})")


register(OpDef(
    name="linear", inputs=("x",),
    attrs=(Attr("out", "int", doc="output features"), Attr("bias", "bool", True)),
    infer=_linear_infer, params=_linear_params,
    fan=lambda ins, a: (ins[0].shape[-1], Dim.const(a["out"])),
    flops=lambda ins, outs, a: 2 * prod(ins[0].shape) * a["out"],
    lower=_linear_lower, traits=frozenset({"linear", "weighted"}), aliases=("dense",),
    check_attrs=lambda a: _positive(a, "out"), glyph="linear",
    doc="y = x W^T + b over the last axis.",
))


def _positive(a, *names):
    for n in names:
        v = a[n]
        vals = v if isinstance(v, (list, tuple)) else [v]
        if any(isinstance(x, int) and x <= 0 for x in vals):
            raise OpError("E0111", f"`{n}` must be positive, got {v}")


def _emb_check(a):
    _positive(a, "num", "dim")
    pi = a["padding_idx"]
    if pi is not None and isinstance(a["num"], int) and not -a["num"] <= pi < a["num"]:
        raise OpError("E0111", f"`padding_idx` {pi} is outside the table of {a['num']} rows")


def _embedding_infer(ins, a, facts):
    x = ins[0]
    if x.is_float:
        raise OpError("E0208", f"embedding expects integer indices, got {x.dtype}", arg=0,
                      label=f"{x.dtype} tensor", help="declare the input as `input tokens: [B, T] int64`")
    if x.vmax is not None and x.vmax.is_const and x.vmax.value >= 2 ** 62:
        raise OpError("E0201", "embedding: these indices are computed from `positions` in a way the checker "
                      "cannot bound", arg=0, label="indices of unknown range",
                      help="index with `positions(...)` directly, or with layout ops of it")
    if x.vmax is not None and x.vmax.is_const and x.vmax.value > a["num"]:
        raise OpError("E0201", f"embedding: the indices go up to {x.vmax.value - 1} but the table has {a['num']} "
                      f"rows", arg=0, label=f"values in 0..{x.vmax.value - 1}",
                      help="enlarge the table, or state the bound with `ensure` (e.g. `ensure T <= n_ctx`)")
    return [TensorType.make(x.shape + (Dim.const(a["dim"]),), "float32", x.axis_names() + (None,))]


register(OpDef(
    name="embedding", inputs=("indices",),
    attrs=(Attr("num", "int", doc="vocabulary size"), Attr("dim", "int", doc="embedding size"),
           Attr("padding_idx", "int", None)),
    infer=_embedding_infer,
    params=lambda ins, a: [ParamSpec("weight", (a["num"], a["dim"]))],
    fan=lambda ins, a: (Dim.const(a["num"]), Dim.const(a["dim"])),
    flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(
        f"nn.Embedding({c.a['num']}, {c.a['dim']}"
        + (f", padding_idx={c.a['padding_idx']})" if c.a["padding_idx"] is not None else ")"),
        f"{c.m}({c.args[0]})"),
    traits=frozenset({"weighted"}), check_attrs=lambda a: _emb_check(a), glyph="E",
    doc="Lookup table: integer indices -> vectors.",
))


def _param_infer(ins, a, facts):
    shape = a["shape"]
    for d in shape:
        if not d.is_const:
            raise OpError("E0203", f"the shape of a free parameter depends on the free dim `{d}`",
                          help="parameter shapes must be known when the spec is checked")
        if d.value <= 0:
            raise OpError("E0111", f"a parameter dim must be positive, got {d}")
    return [TensorType.make(shape)]


register(OpDef(
    name="param", inputs=(),
    attrs=(Attr("shape", "dims"), Attr("std", "float", 0.02, doc="std of the normal init; 0 gives zeros", lo=0)),
    infer=_param_infer,
    params=lambda ins, a: [ParamSpec("", tuple(d.value for d in a["shape"]))],
    fan=lambda ins, a: (a["shape"][-1] if a["shape"] else Dim.const(1), a["shape"][0] if a["shape"] else Dim.const(1)),
    flops=lambda ins, outs, a: Dim.const(0),
    lower=None,  # lowered by the codegen itself: a parameter is an attribute, not a module
    traits=frozenset({"weighted", "source"}), glyph="θ",
    doc="A free learned tensor, e.g. position embeddings: `pos = param([1, T, D])`.",
))
