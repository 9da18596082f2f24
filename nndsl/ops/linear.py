"""Dense layers and embeddings."""
from __future__ import annotations

from ..dims import Dim
from ..pyemit import module_ref
from ..recipe import KEEP, NEW, Ax, Face, Out, Ref, Signature, keep_all
from ..types import TensorType
from .. import signal as S
from .registry import P, Attr, Lowered, OpDef, OpError, concrete, need_float, prod, register, torch_default_init


def _linear_infer(ins, a, facts):
    x = ins[0]
    if x.rank < 1:
        raise OpError("E0202", "linear expects at least a 1-d input", arg=0)
    need_float(x, "linear")
    r = x.rank
    # every axis but the last is kept; the last is contracted with the weight; a new one comes out
    sig = Signature(((*(Ax(KEEP, (Ref(0, i),)) for i in range(r - 1)), Ax(NEW)),), contracted=((Ref(0, r - 1),),))
    return Out([TensorType.make(x.shape[:-1] + (Dim.const(a["out"]),), x.dtype, x.axis_names()[:-1] + (None,))], sig)


def _linear_params(ins, a):
    fin = concrete(ins[0].shape[-1], "the input features of `linear`")
    r = ins[0].rank
    ps = [P("weight", (a["out"], fin), (Face("out", "out", 0, r - 1), Face("in", "in", 0, r - 1)))]
    if a["bias"]:
        ps.append(P("bias", (a["out"],), (Face("bias", "out", 0, r - 1),)))
    return ps


def _linear_lower(c):
    fin = c.ins[0].shape[-1].value
    bias = "" if c.a["bias"] else ", bias=False"
    n = c.node
    if n.attrs.get("tie_transposed"):    # `tie=transpose(enc)`: F.linear(x, enc.weight.T, its own bias)
        src = n.tie[len(n.scope) + 1:] if n.scope else n.tie          # a layer of the same block or model
        return Lowered(f"TransposedTie({fin}, {c.a['out']}{bias})", f"{c.m}({c.args[0]}, "
                       f"{module_ref('self', src)}.weight)", ("prelude:symmetry",))
    return Lowered(f"nn.Linear({fin}, {c.a['out']}{bias})", f"{c.m}({c.args[0]})")


register(OpDef(
    name="linear", inputs=("x",),
    attrs=(Attr("out", "int", doc="output features"), Attr("bias", "bool", True)),
    infer=_linear_infer, params=_linear_params,
    flops=lambda ins, outs, a: 2 * prod(ins[0].shape) * a["out"],
    lower=_linear_lower, traits=frozenset({"linear", "weighted"}), aliases=("dense",),
    signal=S.dense, init_default=torch_default_init, sparse="linear",
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
    if x.dtype not in ("int64", "int32"):
        raise OpError("E0208", f"embedding expects integer indices (int64 or int32), got {x.dtype}", arg=0,
                      label=f"{x.dtype} tensor", help="declare the input as `input tokens: [B, T] int64`")
    from ..passes.shapes import index_range

    why = index_range(x)
    if why == "unbounded":
        raise OpError("E0201", "embedding: these indices are computed from `positions` in a way the checker "
                      "cannot bound", arg=0, label="indices of unknown range",
                      help="index with `positions(...)` directly, or with `+`, `-`, `*`, `//`, `%` by numbers of it")
    if why is not None:
        raise OpError("E0201", f"embedding: the indices may be {why}", arg=0,
                      label=f"values from {x.vmin} up to {x.vmax - 1}",
                      help="offset them into range first (e.g. `+ (W - 1)` after a difference of positions)")
    if x.vmax is not None and x.vmax.is_const and x.vmax.value > a["num"]:
        raise OpError("E0201", f"embedding: the indices go up to {x.vmax.value - 1} but the table has {a['num']} "
                      f"rows", arg=0, label=f"values in 0..{x.vmax.value - 1}",
                      help="enlarge the table, or state the bound with `ensure` (e.g. `ensure T <= n_ctx`)")
    sig = Signature((keep_all(x.rank) + (Ax(NEW),),))
    return Out([TensorType.make(x.shape + (Dim.const(a["dim"]),), "float32", x.axis_names() + (None,))], sig)


register(OpDef(
    name="embedding", inputs=("indices",),
    attrs=(Attr("num", "int", doc="vocabulary size"), Attr("dim", "int", doc="embedding size"),
           Attr("padding_idx", "int", None)),
    infer=_embedding_infer,
    # each row is one index value (the one-hot input), each column faces the new axis
    params=lambda ins, a: [P("weight", (a["num"], a["dim"]), (Face("in"), Face("out", "out", 0, ins[0].rank)))],
    flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(
        f"nn.Embedding({c.a['num']}, {c.a['dim']}"
        + (f", padding_idx={c.a['padding_idx']})" if c.a["padding_idx"] is not None else ")"),
        f"{c.m}({c.args[0]})"),
    traits=frozenset({"weighted"}), check_attrs=lambda a: _emb_check(a), glyph="E",
    signal=S.lookup, init_default=lambda p, ps: (0.0, 1.0),         # nn.Embedding: N(0, 1)
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
    return Out([TensorType.make(shape)], Signature((tuple(Ax(NEW) for _ in shape),)))


def _param_faces(shape):
    """A free parameter feeds whatever uses it: by convention its last axis is its fan-in, its first
    its fan-out (a 1-d one is both), as for a weight matrix."""
    n = len(shape)
    if n == 1:
        return (Face("both", "out", 0, 0),)
    return tuple(Face("in" if i == n - 1 else "out" if i == 0 else "none", "out", 0, i) for i in range(n))


register(OpDef(
    name="param", inputs=(),
    attrs=(Attr("shape", "dims"), Attr("std", "float", 0.02, doc="std of the normal init; 0 gives zeros", lo=0),
           Attr("fill", "float", None, doc="a constant initial value instead (1.0 for a norm's scale)")),
    infer=_param_infer,
    params=lambda ins, a: [P("", tuple(d.value for d in a["shape"]), _param_faces(a["shape"]))],
    flops=lambda ins, outs, a: Dim.const(0),
    lower=None,  # lowered by the codegen itself: a parameter is an attribute, not a module
    traits=frozenset({"weighted", "source"}), glyph="θ", signal=S.free_param,
    doc="A free learned tensor, e.g. position embeddings: `pos = param([1, T, D])`. Bound in a block to "
        "`weight`, it is the block's own `.weight` (ConvNeXt's LayerNorm2d).",
))
