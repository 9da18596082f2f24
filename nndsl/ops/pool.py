"""Max/average pooling, adaptive average pooling, upsampling and pixel shuffle."""
from __future__ import annotations

from ..dims import Dim
from ..recipe import DERIVE, KEEP, MERGE, Ax, Out, Ref, Signature
from ..types import TensorType
from .conv import conv_out
from .. import signal as S
from .registry import Attr, Lowered, OpDef, OpError, need_float, need_rank, prod, pyval, register, tup


def spatial_sig(rank: int, nd: int, how: str, reduced: bool = False) -> Signature:
    """The leading axes are kept, each of the last `nd` is `how` (a window, a resize) over the input's."""
    lead = rank - nd
    win = tuple(Ref(0, lead + i) for i in range(nd))
    return Signature((tuple(Ax(KEEP, (Ref(0, i),)) for i in range(lead))
                      + tuple(Ax(DERIVE, (r,), how=how) for r in win),),
                     reduced=win if reduced else ())


def _make_pool(kind: str, nd: int):
    name = f"{kind}pool{nd}d"

    def infer(ins, a, facts):
        x = ins[0]
        need_rank(x, (nd + 1, nd + 2), name)
        need_float(x, name)
        k = tup(a["kernel"], nd)
        s = tup(a["stride"] if a["stride"] is not None else a["kernel"], nd)
        p = tup(a["padding"], nd)
        if any(pp * 2 > kk for pp, kk in zip(p, k)):
            raise OpError("E0111", f"{name}: padding must be at most half the kernel size")
        lead = x.rank - nd
        sp = []
        for i in range(nd):
            size = x.shape[lead + i]
            if size.is_const and size.value + 2 * p[i] < k[i]:
                raise OpError("E0201", f"{name}: kernel {k[i]} is larger than the padded input size "
                              f"{size.value + 2 * p[i]}", arg=0, label=f"spatial size {size}")
            if name == "avgpool3d" and size.is_const and size.value < k[i]:  # PyTorch checks the unpadded size
                raise OpError("E0201", f"{name}: kernel {k[i]} is larger than the input size {size}", arg=0,
                              label=f"spatial size {size}")
            if a["ceil_mode"]:
                # PyTorch: round up, but the last window must start inside the input or the left padding
                o = (size + 2 * p[i] - k[i] + s[i] - 1).floordiv(s[i]) + 1
                if o.is_const and size.is_const:
                    if (o.value - 1) * s[i] >= size.value + p[i]:
                        o = o - 1
                elif p[i] or s[i] > k[i]:
                    raise OpError("E0203", f"{name}: with ceil_mode, padding or a stride above the kernel, the "
                                  f"output size depends on the value of `{size}`", arg=0,
                                  help="bind the dim with `--dim`, or use ceil_mode=false")
            else:
                o = conv_out(size, k[i], s[i], p[i], 1)
            if o.is_const and o.value <= 0:
                raise OpError("E0201", f"{name}: kernel {k[i]} is larger than the input size {size}", arg=0)
            sp.append(o)
        return Out([TensorType.make((*x.shape[:lead], *sp), x.dtype, x.axis_names())],
                   spatial_sig(x.rank, nd, "window"))

    def lower(c):
        cls = f"nn.{'MaxPool' if kind == 'max' else 'AvgPool'}{nd}d"
        parts = [f"kernel_size={pyval(c.a['kernel'])}"]
        if c.a["stride"] is not None:
            parts.append(f"stride={pyval(c.a['stride'])}")
        if c.a["padding"] != 0:
            parts.append(f"padding={pyval(c.a['padding'])}")
        if c.a["ceil_mode"]:
            parts.append("ceil_mode=True")
        x = c.args[0]
        if name == "maxpool3d" and c.ins[0].rank == 4:
            x += ".contiguous()"  # PyTorch's unbatched max_pool3d refuses a channels-last-like 4-d layout
        return Lowered(f"{cls}({', '.join(parts)})", f"{c.m}({x})")

    register(OpDef(
        name=name, inputs=("x",),
        attrs=(Attr("kernel", "ints"), Attr("stride", "ints", None), Attr("padding", "ints", 0),
               Attr("ceil_mode", "bool", False)),
        infer=infer, flops=lambda ins, outs, a: prod(outs[0].shape) * prod(tup(a["kernel"], nd)),
        lower=lower, traits=frozenset({"pool", "parameter_free"}), signal=S.pool(kind, nd),
        check_attrs=lambda a: _pos(a, "kernel", "stride"), glyph=f"{kind}pool",
        doc=f"{kind.capitalize()} pooling over the last {nd} axes.",
    ))


def _pos(a, *names):
    for n in names:
        v = a.get(n)
        if v is None:
            continue
        vals = v if isinstance(v, (list, tuple)) else [v]
        if any(x <= 0 for x in vals):
            raise OpError("E0111", f"`{n}` must be positive, got {v}")


for _nd in (1, 2, 3):
    _make_pool("max", _nd)
    _make_pool("avg", _nd)


def _adaptive_infer(ins, a, facts):
    x = ins[0]
    need_rank(x, (3, 4), "adaptive_avgpool2d")
    need_float(x, "adaptive_avgpool2d")
    o = tup(a["size"], 2)
    return Out([TensorType.make((*x.shape[:-2], *o), x.dtype, x.axis_names())], spatial_sig(x.rank, 2, "window"))


register(OpDef(
    name="adaptive_avgpool2d", inputs=("x",), attrs=(Attr("size", "ints", 1),),
    infer=_adaptive_infer, flops=lambda ins, outs, a: prod(ins[0].shape),
    lower=lambda c: Lowered(f"nn.AdaptiveAvgPool2d({pyval(c.a['size'])})", f"{c.m}({c.args[0]})"),
    traits=frozenset({"pool", "parameter_free"}), check_attrs=lambda a: _pos(a, "size"), glyph="avgpool",
    signal=S.pool("adaptive", 2),
    doc="Average pooling to a fixed output size.",
))


def _up_infer(ins, a, facts):
    x = ins[0]
    need_rank(x, (3, 4, 5), "upsample")
    need_float(x, "upsample")
    want = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}.get(a["mode"])
    if want is not None and x.rank != want:
        raise OpError("E0202", f"upsample mode \"{a['mode']}\" needs a {want}-d input, got {x.rank}-d {x}", arg=0,
                      help="\"nearest\" works on 3-, 4- and 5-d inputs")
    nd = x.rank - 2
    if a["size"] is not None:
        sp = tup(a["size"], nd)
    else:
        sc = tup(a["scale"], nd)
        if any(not float(v).is_integer() for v in sc):
            raise OpError("E0111", "upsample needs an integer scale (or an explicit `size`) to keep shapes exact")
        sp = [x.shape[2 + i] * int(sc[i]) for i in range(nd)]
    return Out([TensorType.make((*x.shape[:2], *sp), x.dtype, x.axis_names())], spatial_sig(x.rank, nd, "resize"))


def _up_check(a):
    sc = a["scale"]
    vals = sc if isinstance(sc, (list, tuple)) else [sc]
    if a["size"] is None and (not vals or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)):
        raise OpError("E0106", f"`scale` of `upsample` must be a number or a list of numbers, got {sc!r}")
    if a["size"] is None and any(not (0 < v < 2 ** 20) for v in vals):
        raise OpError("E0111", f"`scale` of `upsample` must be positive, got {sc}")
    _pos(a, "size")


def _up_lower(c):
    kw = [f"size={pyval(c.a['size'])}"] if c.a["size"] is not None else [f"scale_factor={pyval(c.a['scale'])}"]
    kw.append(f"mode={pyval(c.a['mode'])}")
    if c.a["mode"] in ("bilinear", "bicubic", "linear", "trilinear"):
        kw.append(f"align_corners={c.a['align_corners']}")
    return Lowered(None, f"F.interpolate({c.args[0]}, {', '.join(kw)})")


register(OpDef(
    name="upsample", inputs=("x",),
    attrs=(Attr("scale", "any", 2), Attr("size", "ints", None),
           Attr("mode", "str", "nearest", choices=("nearest", "linear", "bilinear", "bicubic", "trilinear")),
           Attr("align_corners", "bool", False)),
    infer=_up_infer, flops=lambda ins, outs, a: prod(outs[0].shape), lower=_up_lower,
    traits=frozenset({"parameter_free"}), aliases=("interpolate",), glyph="up", signal=S.same, check_attrs=lambda a: _up_check(a),
    doc="Resize the spatial axes by an integer scale or to a fixed size.",
))


def _ps_infer(ins, a, facts):
    x = ins[0]
    need_rank(x, (4,), "pixel_shuffle")
    r = a["factor"]
    c = x.shape[1]
    if c.is_const and c.value % (r * r):
        raise OpError("E0205", f"pixel_shuffle: channels {c} are not divisible by factor**2 = {r * r}", arg=0)
    # channels split into (C, r, r); each r joins a spatial axis
    k = Dim.const(r)
    sig = Signature(((Ax(KEEP, (Ref(0, 0),)), Ax(KEEP, (Ref(0, 1, 0, 3, c.floordiv(r * r)),)),
                      Ax(MERGE, (Ref(0, 2), Ref(0, 1, 1, 3, k))), Ax(MERGE, (Ref(0, 3), Ref(0, 1, 2, 3, k)))),))
    return Out([TensorType.make((x.shape[0], c.floordiv(r * r), x.shape[2] * r, x.shape[3] * r), x.dtype,
                                x.axis_names())], sig)


register(OpDef(
    name="pixel_shuffle", inputs=("x",), attrs=(Attr("factor", "int", lo=1),),
    infer=_ps_infer, flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(None, f"F.pixel_shuffle({c.args[0]}, {c.a['factor']})"),
    traits=frozenset({"parameter_free", "layout"}), check_attrs=lambda a: _pos(a, "factor"), glyph="shuffle",
    doc="[B, C*r*r, H, W] -> [B, C, H*r, W*r].",
))
