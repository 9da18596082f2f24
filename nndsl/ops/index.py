"""Index arithmetic: integer ranges, lookups by an integer tensor, cyclic shifts, selection by a mask.
With comparisons and `//`, `%` on tensors these say Swin's relative-position index and shifted-window
masks in the spec itself."""
from __future__ import annotations

from ..dims import Dim
from ..recipe import KEEP, NEW, Ax, Out, Ref, Signature, broadcast_sig
from ..types import TensorType
from ..recipe import Face, P
from .. import signal as S
from .registry import Attr, Lowered, OpDef, OpError, broadcast, concrete, pyval, register
from .tensor import _axes_list, resolve_axis


def _arange_infer(ins, a, facts):
    n = a["n"]                   # an int: the shape pass refuses a free dim here (E0203)
    t = TensorType.make([n], "int64").model_copy(update={"vmax": Dim.const(n), "vmin": Dim.const(0)})
    return Out([t], Signature(((Ax(NEW),),)))


register(OpDef(
    name="arange", inputs=(), attrs=(Attr("n", "int", lo=1, hi=2 ** 31 - 1, doc="length"),),
    infer=_arange_infer, flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(None, f"torch.arange({c.a['n']})"),
    traits=frozenset({"parameter_free", "source", "constant"}), glyph="arange",
    doc="0, 1, ..., n-1 (int64), for index arithmetic known when the spec is checked.",
))


def _take_infer(ins, a, facts):
    x, idx = ins
    if idx.dtype not in ("int64", "int32"):
        raise OpError("E0208", f"take: indices must be an int64 or int32 tensor, got {idx.dtype}", arg=1,
                      label=f"{idx.dtype} tensor")
    ax = resolve_axis(x, a["axis"])
    size = x.shape[ax]
    from ..passes.shapes import index_range

    why = index_range(idx)
    if why is not None and why != "unbounded":
        raise OpError("E0201", f"take: the indices may be {why}", arg=1, label="indices that may be negative",
                      help="offset them into range first (e.g. `+ (W - 1)` after a difference of positions)")
    known = idx.vmax is not None and idx.vmax.is_const and idx.vmax.value < 2 ** 62   # else: not followed
    if known and size.is_const and idx.vmax.value > size.value:
        raise OpError("E0201", f"take: the indices go up to {idx.vmax.value - 1} but axis {ax} has {size} entries",
                      arg=1, label=f"values in 0..{idx.vmax.value - 1}")
    shape = x.shape[:ax] + idx.shape + x.shape[ax + 1:]
    names = x.axis_names()[:ax] + idx.axis_names() + x.axis_names()[ax + 1:]
    sig = Signature((tuple(Ax(KEEP, (Ref(0, k),)) for k in range(ax)) + tuple(Ax(KEEP, (Ref(1, k),)) for k in range(idx.rank))
                     + tuple(Ax(KEEP, (Ref(0, k),)) for k in range(ax + 1, x.rank)),), reduced=(Ref(0, ax),))
    return Out([TensorType.make(shape, x.dtype, names)], sig, {"axis": ax})


register(OpDef(
    name="take", inputs=("x", "index"), attrs=(Attr("axis", "axes", 0),), infer=_take_infer,
    flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(None, f"{c.args[0]}[{'(slice(None),) * ' + str(c.a['axis']) + ' + ' if c.a['axis'] else ''}"
                                  f"({c.args[1]},)]"),
    traits=frozenset({"parameter_free", "index"}), aliases=("gather_rows",), glyph="take", draw="index",
    signal=S.same,
    doc="Entries of x along `axis` at an integer tensor of indices: the axis is replaced by the index's "
        "axes (x[..., index, ...]), e.g. a relative-position bias table looked up by an index tensor.",
))


def _roll_check(a):
    shifts = a["shifts"] if isinstance(a["shifts"], (list, tuple)) else [a["shifts"]]
    axes = a["axes"] if isinstance(a["axes"], (list, tuple)) else [a["axes"]]
    if len(shifts) != len(axes):
        raise OpError("E0111", f"roll: {len(shifts)} shifts for {len(axes)} axes")


def _roll_infer(ins, a, facts):
    x = ins[0]
    axes = _axes_list(x, a["axes"])
    return Out([x], None, {"axes": axes, "shifts": list(a["shifts"]) if isinstance(a["shifts"], (list, tuple))
                           else [a["shifts"]]})


register(OpDef(
    name="roll", inputs=("x",), attrs=(Attr("shifts", "ints"), Attr("axes", "axes")), infer=_roll_infer,
    flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(None, f"torch.roll({c.args[0]}, {pyval(tuple(c.a['shifts']))}, "
                                  f"{pyval(tuple(c.a['axes']))})"),
    traits=frozenset({"parameter_free", "shape_preserving", "layout"}), check_attrs=_roll_check, glyph="roll", draw="box",
    doc="Shift cyclically along axes (Swin's shifted windows): roll(x, [-3, -3], [1, 2]).",
))


def _where_infer(ins, a, facts):
    c, x, y = ins
    if c.dtype != "bool":
        raise OpError("E0208", f"where: the condition must be a bool tensor (a comparison), got {c.dtype}", arg=0,
                      label=f"{c.dtype} tensor")
    if x.dtype != y.dtype:
        raise OpError("E0208", f"where: the two choices are {x.dtype} and {y.dtype}", arg_labels={1: x.dtype, 2: y.dtype})
    xy = broadcast(x, y, "where")
    out = broadcast(c.model_copy(update={"dtype": x.dtype}), xy, "where")
    return Out([out], broadcast_sig(ins, out))


register(OpDef(
    name="where", inputs=("cond", "x", "y"), infer=_where_infer, flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(None, f"torch.where({c.args[0]}, {c.args[1]}, {c.args[2]})"),
    traits=frozenset({"parameter_free"}), glyph="where", signal=S.mix,
    doc="x where cond holds, y elsewhere (with broadcasting).",
))


def _masked_fill_infer(ins, a, facts):
    x, m = ins
    if m.dtype != "bool":
        raise OpError("E0208", f"masked_fill: the mask must be a bool tensor (a comparison), got {m.dtype}", arg=1,
                      label=f"{m.dtype} tensor")
    out = broadcast(x, m, "masked_fill")
    if out.shape != x.shape:
        raise OpError("E0201", f"masked_fill: the mask {m} would enlarge {x}", arg_labels={0: str(x), 1: str(m)})
    return Out([x], broadcast_sig(ins, x))


register(OpDef(
    name="masked_fill", inputs=("x", "mask"), attrs=(Attr("value", "float"),), infer=_masked_fill_infer,
    flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(None, f"{c.args[0]}.masked_fill({c.args[1]}, {pyval(c.a['value'])})"),
    traits=frozenset({"parameter_free"}), glyph="fill", signal=S.same,
    doc="x with `value` where the mask holds (attention masks: masked_fill(scores, mask, -100.0)).",
))


def _buffer_infer(ins, a, facts):
    x = ins[0]
    for d in x.shape:
        concrete(d, "the shape of a buffer")
    return [x]


register(OpDef(
    name="buffer", inputs=("x",), attrs=(Attr("persistent", "bool", True, doc="kept in the state dict"),),
    infer=_buffer_infer,
    params=lambda ins, a: [P("", tuple(d.value for d in ins[0].shape),
                             tuple(Face("none", "out", 0, i) for i in range(ins[0].rank)), "buffer", ins[0].dtype)],
    flops=lambda ins, outs, a: Dim.const(0),
    lower=None,  # lowered by the codegen itself: computed in __init__, registered, read in forward
    traits=frozenset({"shape_preserving", "weighted", "needs_constant"}), glyph="buf",
    value_bound=lambda bounds, ins, outs, a: bounds[0],
    doc="A tensor computed once when the module is built and registered as a buffer at this binding's "
        "name (Swin's `relative_position_index = buffer(index)`); x may depend only on `arange` and "
        "numbers through parameter-free ops (E0118 otherwise).",
))
