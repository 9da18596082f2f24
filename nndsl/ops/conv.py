"""Convolutions (1d/2d/3d, transposed)."""
from __future__ import annotations

from ..dims import Dim
from ..recipe import DERIVE, KEEP, NEW, Ax, Face, Out, Ref, Signature
from ..types import TensorType
from .. import signal as S
from .registry import (P, Attr, Lowered, OpDef, OpError, concrete, need_float, need_rank, prod, pyval,
                       register, torch_default_init, tup)


def conv_signature(nd: int) -> Signature:
    """[B, C_in, *S] -> [B, C_out, *S']: the batch is kept, the channels are contracted with the weight and
    new ones come out, each spatial axis is a window over the input's."""
    return Signature(((Ax(KEEP, (Ref(0, 0),)), Ax(NEW), *(Ax(DERIVE, (Ref(0, 2 + i),), how="window")
                                                        for i in range(nd))),),
                     contracted=((Ref(0, 1),),))


def conv_weight(name: str, shape, nd: int, groups: int, transposed: bool = False):
    """A convolution kernel's faces: channels out (block-diagonal over the groups), channels in, window."""
    if transposed:   # [C_in, C_out / groups, *k]
        faces = (Face("in", "in", 0, 1, groups), Face("out", "out", 0, 1))
    else:            # [C_out, C_in / groups, *k]
        faces = (Face("out", "out", 0, 1, groups), Face("in", "in", 0, 1))
    return P(name, shape, faces + tuple(Face("window", "in", 0, 2 + i) for i in range(nd)))


def conv_out(size: Dim, k: int, s: int, p: int, d: int) -> Dim:
    return (size + 2 * p - d * (k - 1) - 1).floordiv(s) + 1


def _norm_attrs(a, nd):
    k = tup(a["kernel"], nd)
    s = tup(a["stride"], nd)
    dl = tup(a["dilation"], nd)
    p = a["padding"]
    if p == "same":
        if any(x != 1 for x in s):
            raise OpError("E0111", "padding=\"same\" needs stride 1", help="use an explicit padding with strides")
        p = tuple((dd * (kk - 1)) // 2 for kk, dd in zip(k, dl))
        if any((dd * (kk - 1)) % 2 for kk, dd in zip(k, dl)):
            p = "same"
    elif p == "valid":
        p = (0,) * nd
    elif isinstance(p, str):
        raise OpError("E0111", f"padding must be an int, a list, \"same\" or \"valid\", got \"{p}\"")
    else:
        p = tup(p, nd)
    return k, s, p, dl


def _check(a):
    for n in ("kernel", "stride", "dilation", "groups", "out"):
        if n in a:
            v = a[n]
            vals = v if isinstance(v, (list, tuple)) else [v]
            if any(x <= 0 for x in vals):
                raise OpError("E0111", f"`{n}` must be positive, got {v}")
    p = a.get("padding")
    if p is not None and not isinstance(p, str):
        vals = p if isinstance(p, (list, tuple)) else [p]
        if not vals or not all(isinstance(x, int) and not isinstance(x, bool) for x in vals):
            raise OpError("E0106", f"`padding` must be an int, a list of ints, \"same\" or \"valid\", got {p!r}")
        if any(x < 0 for x in vals):
            raise OpError("E0111", f"`padding` must not be negative, got {p}")
    elif isinstance(p, str) and p not in ("same", "valid"):
        raise OpError("E0111", f"`padding` must be an int, a list, \"same\" or \"valid\", got \"{p[:20]}\"")


def _make_conv(nd: int):
    name = f"conv{nd}d"
    layout = "[B, C, " + ", ".join("LHW"[-nd:] if nd < 3 else "DHW") + "]" if nd > 1 else "[B, C, L]"

    def infer(ins, a, facts):
        x = ins[0]
        need_rank(x, (nd + 2,), name)
        need_float(x, name)
        c_in = x.shape[1]
        k, s, p, dl = _norm_attrs(a, nd)
        g = a["groups"]
        if c_in.is_const and c_in.value % g:
            raise OpError("E0205", f"{name}: input channels {c_in} are not divisible by groups={g}", arg=0)
        if a["out"] % g:
            raise OpError("E0205", f"{name}: output channels {a['out']} are not divisible by groups={g}")
        mode = a.get("padding_mode", "zeros")
        if mode in ("reflect", "circular"):
            for i in range(nd):
                size = x.shape[2 + i]
                total = dl[i] * (k[i] - 1) if p == "same" else 2 * p[i]
                pad = total - total // 2
                if size.is_const and (pad >= size.value if mode == "reflect" else pad > size.value):
                    raise OpError("E0111", f"{name}: {mode} padding of {pad} does not fit an axis of size {size}",
                                  arg=0, label=f"spatial size {size}",
                                  help="reflect padding must be smaller than the axis; circular at most its size")
        spatial = []
        for i in range(nd):
            size = x.shape[2 + i]
            if p == "same":
                spatial.append(size)
            else:
                o = conv_out(size, k[i], s[i], p[i], dl[i])
                if o.is_const and o.value <= 0:
                    raise OpError("E0201", f"{name}: kernel {k[i]} (dilation {dl[i]}) is larger than the "
                                  f"padded input size {size}", arg=0, label=f"spatial size {size}")
                spatial.append(o)
        names = x.axis_names()
        return Out([TensorType.make((x.shape[0], Dim.const(a["out"]), *spatial), x.dtype,
                                    (names[0], None, *names[2:]))], conv_signature(nd))

    def params(ins, a):
        c_in = concrete(ins[0].shape[1], f"the input channels of `{name}`")
        k = tup(a["kernel"], nd)
        ps = [conv_weight("weight", (a["out"], c_in // a["groups"], *k), nd, a["groups"])]
        if a["bias"]:
            ps.append(P("bias", (a["out"],), (Face("bias", "out", 0, 1),)))
        return ps

    def flops(ins, outs, a):
        k = tup(a["kernel"], nd)
        rf = 1
        for x in k:
            rf *= x
        return 2 * prod(outs[0].shape) * (ins[0].shape[1] // a["groups"]) * rf

    def lower(c):
        k, s, p, dl = _norm_attrs(c.a, nd)
        cls = f"nn.Conv{nd}d"
        one = lambda v: pyval(v[0]) if len(set(v)) == 1 else pyval(v)  # noqa: E731
        parts = [str(c.ins[0].shape[1].value), str(c.a["out"]), f"kernel_size={one(k)}"]
        if any(x != 1 for x in s):
            parts.append(f"stride={one(s)}")
        if p == "same":
            parts.append('padding="same"')
        elif any(x != 0 for x in p):
            parts.append(f"padding={one(p)}")
        if any(x != 1 for x in dl):
            parts.append(f"dilation={one(dl)}")
        if c.a["groups"] != 1:
            parts.append(f"groups={c.a['groups']}")
        if not c.a["bias"]:
            parts.append("bias=False")
        if c.a["padding_mode"] != "zeros":
            parts.append(f"padding_mode={pyval(c.a['padding_mode'])}")
        return Lowered(f"{cls}({', '.join(parts)})", f"{c.m}({c.args[0]})")

    register(OpDef(
        name=name, inputs=("x",),
        attrs=(Attr("out", "int", doc="output channels"), Attr("kernel", "ints"), Attr("stride", "ints", 1),
               Attr("padding", "any", 0, doc='int, list, "same" or "valid"'), Attr("dilation", "ints", 1),
               Attr("groups", "int", 1), Attr("bias", "bool", True),
               Attr("padding_mode", "str", "zeros", choices=("zeros", "reflect", "replicate", "circular"))),
        infer=infer, params=params, flops=flops, lower=lower, check_attrs=_check,
        traits=frozenset({"linear", "weighted", "conv"}), glyph=f"conv{nd}d",
        signal=S.dense, init_default=torch_default_init, sparse="conv",
        doc=f"{nd}-d convolution over a {layout} tensor.",
    ))


for _nd in (1, 2, 3):
    _make_conv(_nd)


def _convt_infer(ins, a, facts):
    x = ins[0]
    need_rank(x, (4,), "conv_transpose2d")
    need_float(x, "conv_transpose2d")
    k = tup(a["kernel"], 2)
    s = tup(a["stride"], 2)
    p = tup(a["padding"], 2)
    op = tup(a["output_padding"], 2)
    dl = tup(a["dilation"], 2)
    g = a["groups"]
    for i in range(2):
        if op[i] < 0 or op[i] >= max(s[i], dl[i]):
            raise OpError("E0111", f"conv_transpose2d: output_padding {op[i]} must be smaller than the stride "
                          f"({s[i]}) or the dilation ({dl[i]})")
    if x.shape[1].is_const and x.shape[1].value % g:
        raise OpError("E0205", f"conv_transpose2d: input channels {x.shape[1]} are not divisible by groups={g}")
    if a["out"] % g:
        raise OpError("E0205", f"conv_transpose2d: output channels {a['out']} are not divisible by groups={g}")
    sp = [(x.shape[2 + i] - 1) * s[i] - 2 * p[i] + dl[i] * (k[i] - 1) + op[i] + 1 for i in range(2)]
    names = x.axis_names()
    return Out([TensorType.make((x.shape[0], Dim.const(a["out"]), *sp), x.dtype, (names[0], None, *names[2:]))],
               conv_signature(2))


def _convt_params(ins, a):
    c_in = concrete(ins[0].shape[1], "the input channels of `conv_transpose2d`")
    k = tup(a["kernel"], 2)
    ps = [conv_weight("weight", (c_in, a["out"] // a["groups"], *k), 2, a["groups"], transposed=True)]
    if a["bias"]:
        ps.append(P("bias", (a["out"],), (Face("bias", "out", 0, 1),)))
    return ps


def _convt_lower(c):
    a = c.a
    parts = [str(c.ins[0].shape[1].value), str(a["out"]), f"kernel_size={pyval(a['kernel'])}"]
    for key, torch_key, dflt in (("stride", "stride", 1), ("padding", "padding", 0),
                                 ("output_padding", "output_padding", 0), ("groups", "groups", 1),
                                 ("dilation", "dilation", 1)):
        if a[key] != dflt:
            parts.append(f"{torch_key}={pyval(a[key])}")
    if not a["bias"]:
        parts.append("bias=False")
    return Lowered(f"nn.ConvTranspose2d({', '.join(parts)})", f"{c.m}({c.args[0]})")


register(OpDef(
    name="conv_transpose2d", inputs=("x",),
    attrs=(Attr("out", "int"), Attr("kernel", "ints"), Attr("stride", "ints", 1), Attr("padding", "ints", 0),
           Attr("output_padding", "ints", 0), Attr("groups", "int", 1), Attr("dilation", "ints", 1),
           Attr("bias", "bool", True)),
    infer=_convt_infer, params=_convt_params,
    flops=lambda ins, outs, a: 2 * prod(ins[0].shape) * (a["out"] // a["groups"]) * prod(tup(a["kernel"], 2)),
    lower=_convt_lower, check_attrs=_check, traits=frozenset({"linear", "weighted", "conv"}),
    signal=S.dense, init_default=torch_default_init,
    aliases=("deconv2d",), glyph="convT",
    doc="Transposed 2-d convolution (learned upsampling).",
))
