"""Normalisation layers."""
from __future__ import annotations

from ..recipe import Face, Out
from .. import signal as S
from .registry import P, pyval, Attr, Lowered, OpDef, OpError, concrete, need_float, need_rank, prod, register



def _ones_zeros(p, params):
    """A norm's affine scale starts at ones, its shift at zeros."""
    return (1.0, 1.0) if p.name == "weight" else (0.0, 0.0)

def _channel(name: str, shape, axes, kind: str = "param", dtype: str = "float32"):
    """A per-channel parameter or statistic: each of its axes faces the same axis of the output."""
    return P(name, shape, tuple(Face("channel", "out", 0, ax) for ax in axes), kind, dtype)


def _same(ins, a, facts):
    need_float(ins[0], "normalisation")
    return [ins[0]]


def _bn(nd: int, ranks):
    name = f"batchnorm{nd}d"

    def infer(ins, a, facts):
        need_rank(ins[0], ranks, name)
        return _same(ins, a, facts)

    def params(ins, a):
        c = concrete(ins[0].shape[1], f"the channels of `{name}`")
        ps = []
        if a["affine"]:
            ps += [_channel("weight", (c,), (1,)), _channel("bias", (c,), (1,))]
        ps += [_channel("running_mean", (c,), (1,), "buffer"), _channel("running_var", (c,), (1,), "buffer"),
               P("num_batches_tracked", (), (), "buffer", "int64")]
        return ps

    def lower(c):
        ch = c.ins[0].shape[1].value
        kw = ""
        if c.a["eps"] != 1e-5:
            kw += f", eps={pyval(c.a['eps'])}"
        if c.a["momentum"] != 0.1:
            kw += f", momentum={pyval(c.a['momentum'])}"
        if not c.a["affine"]:
            kw += ", affine=False"
        return Lowered(f"nn.BatchNorm{nd}d({ch}{kw})", f"{c.m}({c.args[0]})")

    register(OpDef(
        name=name, inputs=("x",),
        attrs=(Attr("eps", "float", 1e-5, lo=0, lo_open=True), Attr("momentum", "float", 0.1, lo=0, hi=1),
               Attr("affine", "bool", True)),
        infer=infer, params=params, flops=lambda ins, outs, a: 2 * prod(ins[0].shape), lower=lower,
        traits=frozenset({"norm", "weighted", "shape_preserving"}), aliases=(f"bn{nd}d",), glyph="BN",
        signal=S.normalize(center=True, across_batch=True), init_default=_ones_zeros,
        draw_on=lambda a, rank: (0, 1),
        doc=f"Batch normalisation over axis 1 of a {' or '.join(str(r) for r in ranks)}-d tensor.",
    ))


_bn(1, (2, 3))
_bn(2, (4,))
_bn(3, (5,))


def _ln_axis(x, a) -> int | None:
    """The one axis normalised when `axis=` is given (channels-first layouts), else None."""
    if a.get("axis") is None:
        return None
    from .tensor import resolve_axis

    if a["dims"] != 1:
        raise OpError("E0111", "layernorm: give `axis` or `dims`, not both")
    return resolve_axis(x, a["axis"])


def _ln_axes(x, a) -> tuple[int, ...]:
    """The normalised axes: `axis` (resolved by the shape rule) or the trailing `dims`."""
    if a["axis"] is not None:
        return (a["axis"],)
    return tuple(range(x.rank - a["dims"], x.rank))


def _ln_shape(ins, a):
    return tuple(concrete(ins[0].shape[i], "the normalised shape of `layernorm`") for i in _ln_axes(ins[0], a))


def _ln_infer(ins, a, facts):
    x = ins[0]
    ax = _ln_axis(x, a)
    if ax is None and (a["dims"] < 1 or a["dims"] > x.rank):
        raise OpError("E0111", f"layernorm: dims={a['dims']} for a {x.rank}-d input")
    return Out(_same(ins, a, facts), resolved={"axis": ax})


def _ln_params(ins, a):
    shape = _ln_shape(ins, a)
    if not a["affine"]:
        return []
    axes = _ln_axes(ins[0], a)
    ps = [_channel("weight", shape, axes)]
    if a["bias"]:
        ps.append(_channel("bias", shape, axes))
    return ps


def _ln_lower(c):
    shape = _ln_shape(c.ins, c.a)
    s = str(shape[0]) if len(shape) == 1 else pyval(shape)
    kw = ""
    if c.a["eps"] != 1e-5:
        kw += f", eps={pyval(c.a['eps'])}"
    if not c.a["affine"]:
        kw += ", elementwise_affine=False"
    elif not c.a["bias"]:
        kw += ", bias=False"
    ax = c.a["axis"]
    x = c.args[0]
    if ax is not None and ax != c.ins[0].rank - 1:  # normalise one inner axis: move it last and back
        return Lowered(f"nn.LayerNorm({s}{kw})", f"{c.m}({x}.movedim({ax}, -1)).movedim(-1, {ax})")
    return Lowered(f"nn.LayerNorm({s}{kw})", f"{c.m}({x})")


register(OpDef(
    name="layernorm", inputs=("x",),
    attrs=(Attr("eps", "float", 1e-5, lo=0, lo_open=True), Attr("dims", "int", 1, doc="trailing axes normalised", lo=1),
           Attr("affine", "bool", True), Attr("bias", "bool", True),
           Attr("axis", "axes", None, doc="normalise this one axis instead (channels-first: axis=1)")),
    infer=_ln_infer, params=_ln_params, flops=lambda ins, outs, a: 5 * prod(ins[0].shape), lower=_ln_lower,
    traits=frozenset({"norm", "weighted", "shape_preserving"}), aliases=("ln",), glyph="LN",
    signal=S.normalize(center=True), init_default=_ones_zeros,
    draw_on=lambda a, rank: (a["axis"],) if a.get("axis") is not None else tuple(range(rank - a["dims"], rank)),
    doc="Layer normalisation over the trailing `dims` axes, or over one `axis` (channels-first, as "
        "ConvNeXt's LayerNorm2d); the parameters are nn.LayerNorm's either way.",
))


def _rms_params(ins, a):
    d = concrete(ins[0].shape[-1], "the features of `rmsnorm`")
    return [_channel("weight", (d,), (ins[0].rank - 1,))] if a["affine"] else []


def _rms_lower(c):
    d = c.ins[0].shape[-1].value
    kw = f", eps={pyval(c.a['eps'])}" if c.a["eps"] is not None else ""
    if not c.a["affine"]:
        kw += ", elementwise_affine=False"
    return Lowered(f"nn.RMSNorm({d}{kw})", f"{c.m}({c.args[0]})")


def _rms_infer(ins, a, facts):
    if ins[0].rank < 1:
        raise OpError("E0202", "rmsnorm expects at least a 1-d input", arg=0, label="this is 0-d")
    return _same(ins, a, facts)


register(OpDef(
    name="rmsnorm", inputs=("x",), attrs=(Attr("eps", "float", None, lo=0, lo_open=True), Attr("affine", "bool", True)),
    infer=_rms_infer, params=_rms_params, flops=lambda ins, outs, a: 4 * prod(ins[0].shape), lower=_rms_lower,
    traits=frozenset({"norm", "weighted", "shape_preserving"}), glyph="RMS", draw_on=lambda a, rank: (rank - 1,),
    signal=S.normalize(center=False), init_default=_ones_zeros,
    doc="Root-mean-square normalisation over the last axis.",
))


def _gn_infer(ins, a, facts):
    x = ins[0]
    if x.rank < 2:
        raise OpError("E0202", "groupnorm expects at least a 2-d [B, C, ...] input", arg=0)
    c = x.shape[1]
    if c.is_const and c.value % a["groups"]:
        raise OpError("E0205", f"groupnorm: channels {c} are not divisible by groups={a['groups']}", arg=0)
    per = x.shape[0] * c.floordiv(a["groups"]) * prod(x.shape[2:])
    if per.is_const and per.value == 1:  # PyTorch needs more than one value to normalise
        raise OpError("E0111", f"groupnorm: each of the {a['groups']} groups of {x} holds a single value", arg=0,
                      help="use fewer groups, or normalise over more values")
    return _same(ins, a, facts)


def _gn_params(ins, a):
    c = concrete(ins[0].shape[1], "the channels of `groupnorm`")
    return [_channel("weight", (c,), (1,)), _channel("bias", (c,), (1,))] if a["affine"] else []


register(OpDef(
    name="groupnorm", inputs=("x",),
    attrs=(Attr("groups", "int", lo=1), Attr("eps", "float", 1e-5, lo=0, lo_open=True), Attr("affine", "bool", True)),
    infer=_gn_infer, params=_gn_params, flops=lambda ins, outs, a: 5 * prod(ins[0].shape),
    lower=lambda c: Lowered(
        f"nn.GroupNorm({c.a['groups']}, {c.ins[0].shape[1].value}"
        + (f", eps={pyval(c.a['eps'])}" if c.a["eps"] != 1e-5 else "")
        + (", affine=False" if not c.a["affine"] else "") + ")", f"{c.m}({c.args[0]})"),
    traits=frozenset({"norm", "weighted", "shape_preserving"}), glyph="GN", draw_on=lambda a, rank: (1,),
    signal=S.normalize(center=True), init_default=_ones_zeros,
    check_attrs=lambda a: None if a["groups"] > 0 else (_ for _ in ()).throw(
        OpError("E0111", f"`groups` must be positive, got {a['groups']}")),
    doc="Group normalisation over channel groups.",
))
