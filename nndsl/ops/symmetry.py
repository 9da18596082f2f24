"""Equivariant layers: `equivariant_linear(x, out, axis=N)`, the S_N-equivariant map of a set of
feature vectors (DeepSets, Zaheer et al. 2017): y_n = Λ x_n + Γ mean_m x_m + b along `axis`. Its two
free weights per channel pair are the whole basis the solver finds for permutation -> permutation maps
(nndsl.symmetry: dimension 2); it is stored as one nn.Linear over [x_n, mean x], weight [out, 2C]."""
from __future__ import annotations

from ..dims import Dim
from ..pyemit import lit
from ..recipe import DERIVE, KEEP, NEW, Ax, Face, Out, Ref, Signature
from ..types import TensorType
from .. import signal as S
from .registry import P, Attr, Lowered, OpDef, OpError, concrete, need_float, prod, register, torch_default_init
from .tensor import resolve_axis


MAX_AXIS = 16        # the size of an axis whose equivariant maps are solved densely (m·d² constants emitted)


def _axis_maps(kind, gens, d):
    """The solver's maps of one axis (symmetry.axis_basis) scaled to the identity's norm √D (and its
    invariant vectors to the all-ones vector's), rounded to lists for the recipe. At that scale each
    coefficient meets the input as one dense weight would: fan-in is C·m, and PyTorch's default draw,
    the init rules and the signal pass read it off the weight's faces."""
    import math

    from ..symmetry import axis_basis

    maps, inv = axis_basis(kind, gens, d)
    r = math.sqrt(d)
    return [[[round(float(v) * r, 12) for v in row] for row in m] for m in maps], \
        [[round(float(v) * r, 12) for v in vec] for vec in inv]


def _infer_group(ins, a):
    """`equivariant_linear(x, out, group=G)`: [..., C, D] -> [..., out, D], the weight Σ_m θ[o, c, m] B_m over the
    maps B_m of D that commute with G's factor; the bias a combination of its invariant vectors."""
    x = ins[0]
    if x.rank < 2:
        raise OpError("E0202", "equivariant_linear with `group=` expects [..., C, D]: channels, then the acted axis",
                      arg=0)
    d, c = x.shape[-1], x.shape[-2]
    if not d.is_const or not 1 <= d.value <= MAX_AXIS:
        raise OpError("E0203", f"equivariant_linear solves the maps of its last axis, which needs a known size from 1 "
                      f"to {MAX_AXIS}, got {d}", arg=0, help="bind the dim with `--dim` or in the input declaration")
    g = a["group"]
    if g["kind"] == "matrices" and len(g["gens"][0]) != d.value:
        raise OpError("E0201", f"the group's matrices are {len(g['gens'][0])}x{len(g['gens'][0])} but the last axis "
                      f"has size {d}", arg=0)
    maps, inv = _axis_maps(g["kind"], g["gens"], d.value)
    r = x.rank
    sig = Signature(((*(Ax(KEEP, (Ref(0, i),)) for i in range(r - 2)), Ax(NEW), Ax(KEEP, (Ref(0, r - 1),))),),
                    contracted=((Ref(0, r - 2),),))
    names = x.axis_names()
    return Out([TensorType.make(x.shape[:-2] + (Dim.const(a["out"]), d), x.dtype, names[:-2] + (None, names[-1]))],
               sig, resolved={"maps": maps, "invariants": inv})


def _infer(ins, a, facts):
    x = ins[0]
    need_float(x, "equivariant_linear")
    if a.get("group") is not None:
        return _infer_group(ins, a)
    if x.rank < 2:
        raise OpError("E0202", "equivariant_linear expects [..., N, features]: a set axis and a feature axis", arg=0)
    ax = resolve_axis(x, a["axis"], "set axis")
    r = x.rank
    if ax == r - 1:
        raise OpError("E0111", "the set axis of `equivariant_linear` cannot be its feature axis (the last)", arg=0)
    sig = Signature(((*(Ax(KEEP, (Ref(0, i),)) for i in range(r - 1)), Ax(NEW)),), contracted=((Ref(0, r - 1),),))
    return Out([TensorType.make(x.shape[:-1] + (Dim.const(a["out"]),), x.dtype, x.axis_names()[:-1] + (None,))],
               sig, resolved={"axis": ax})


def _params(ins, a):
    if a.get("group") is not None:
        c = concrete(ins[0].shape[-2], "the input channels of `equivariant_linear`")
        r = ins[0].rank
        m, k = len(a["maps"]), len(a["invariants"])
        ps = [P("weight", (a["out"], c, m), (Face("out", "out", 0, r - 2), Face("in", "in", 0, r - 2),
                                             Face("in", "in", 0, r - 1)))]      # the maps meet the acted axis
        if a["bias"] and k:
            ps.append(P("bias", (a["out"], k), (Face("bias", "out", 0, r - 2), Face("none"))))
        return ps
    c = concrete(ins[0].shape[-1], "the input features of `equivariant_linear`")
    r = ins[0].rank
    ps = [P("weight", (a["out"], 2 * c), (Face("out", "out", 0, r - 1), Face("in", "in", 0, r - 1)))]
    if a["bias"]:
        ps.append(P("bias", (a["out"],), (Face("bias", "out", 0, r - 1),)))
    return ps


def _lower(c):
    if c.a.get("group") is not None:
        inv = c.a["invariants"] if c.a["bias"] and c.a["invariants"] else None
        return Lowered(f"EquivariantMap({c.ins[0].shape[-2].value}, {c.a['out']}, {lit(c.a['maps'])}, {lit(inv)})",
                       f"{c.m}({c.args[0]})", ("prelude:symmetry",))
    fin = c.ins[0].shape[-1].value
    ax = c.a["axis"]
    x = c.args[0]
    bias = "" if c.a["bias"] else ", bias=False"
    pooled = f"{x}.mean({ax}, keepdim=True).expand_as({x})"
    return Lowered(f"nn.Linear({2 * fin}, {c.a['out']}{bias})", f"{c.m}(torch.cat([{x}, {pooled}], -1))")


def _check(a):
    if isinstance(a["out"], int) and a["out"] <= 0:
        raise OpError("E0111", f"`out` must be positive, got {a['out']}")


def _equivariance(q):
    """Kept for a permutation of the set axes (and of any axis but the features); the features are mixed.
    A grid's rotation or a rotation of coordinates is not a permutation of one set axis: no claim. With
    `group=`, kept for that factor acting on the last axis (and for any action on the leading axes)."""
    from ..passes.equivariance import Verdict

    roles = q.roles[0]
    g = q.attrs.get("group")
    if g is not None:
        if roles[-2]:
            return Verdict("broken", "mixes an acted axis as its channels", "put the channels before the acted axis")
        if not roles[-1]:
            return None
        if g["kind"] != q.kind or (g["kind"] == "matrices" and g["gens"] != q.gens):
            return Verdict("unknown", f"commutes with {g['kind']}, not with the {q.kind} acting on its last axis")
        return None
    if roles and roles[-1]:
        return Verdict("broken", "mixes the acted axis as its features", "apply it with the acted axis as its set "
                       "axis (`axis=N`), features last")
    if q.family != "set":
        return Verdict("unknown", f"is equivariant to permutations of its set axis, not to {q.kind}")
    return None


register(OpDef(
    name="equivariant_linear", inputs=("x",),
    attrs=(Attr("out", "int", doc="output features"), Attr("axis", "axes", 1, doc="the set axis (permuted)"),
           Attr("bias", "bool", True),
           Attr("group", "group", None, doc="a group acting on the last axis: [..., C, D] -> [..., out, D]")),
    infer=_infer, params=_params, lower=_lower,
    flops=lambda ins, outs, a: (2 * prod(ins[0].shape) * a["out"] * ins[0].shape[-1]) if a.get("group") is not None
    else 4 * prod(ins[0].shape) * a["out"],
    traits=frozenset({"linear", "weighted"}), signal=S.dense, init_default=torch_default_init,
    check_attrs=_check, glyph="L_S", equivariance=_equivariance,
    doc="y_n = Λ x_n + Γ mean_m x_m + b over the set `axis`: equivariant under permutations of it "
        "(DeepSets); one nn.Linear over [x_n, mean x]. With `group=G`: [..., C, D] -> [..., out, D], the weight "
        "a combination of the maps of D that commute with G (the solver's basis), the bias of its invariant "
        "vectors.",
))


# -- order 2: S_N acting on both axes of [..., N, N, C] (Maron et al. 2019) -------------------------------
# The 15 maps spanning the equivariant linear maps from order-2 to order-2 tensors (Bell(4) = 15), each
# as a torch expression of `x` ([..., N, N, C], set axes -3 and -2): the identity, the transpose, the
# diagonal, row and column means and the total mean, broadcast along rows, columns or the diagonal.
_ORDER2 = (
    "{x}", "{x}.transpose(-3, -2)",
    "{eye} * {x}",
    "{x}.mean(-2, keepdim=True).expand_as({x})", "{x}.mean(-2, keepdim=True).transpose(-3, -2).expand_as({x})",
    "{x}.mean(-3, keepdim=True).expand_as({x})", "{x}.mean(-3, keepdim=True).transpose(-3, -2).expand_as({x})",
    "{eye} * {x}.mean(-2, keepdim=True)", "{eye} * {x}.mean(-3, keepdim=True).transpose(-3, -2)",
    "{x}.mean((-3, -2), keepdim=True).expand_as({x})", "{eye} * {x}.mean((-3, -2), keepdim=True)",
    "{diag}.unsqueeze(-2).expand_as({x})", "{diag}.unsqueeze(-3).expand_as({x})",
    "{diag}.mean(-2, keepdim=True).unsqueeze(-2).expand_as({x})",
    "{eye} * {diag}.mean(-2, keepdim=True).unsqueeze(-2)",
)


def _infer2(ins, a, facts):
    x = ins[0]
    need_float(x, "equivariant_linear2")
    r = x.rank
    if r < 3:
        raise OpError("E0202", "equivariant_linear2 expects [..., N, N, features]", arg=0)
    n1, n2 = x.shape[-3], x.shape[-2]
    if n1 != n2:
        raise OpError("E0201", f"equivariant_linear2 needs two set axes of one size, got {n1} and {n2}", arg=0)
    sig = Signature(((*(Ax(KEEP, (Ref(0, i),)) for i in range(r - 1)), Ax(NEW)),), contracted=((Ref(0, r - 1),),))
    return Out([TensorType.make(x.shape[:-1] + (Dim.const(a["out"]),), x.dtype, x.axis_names()[:-1] + (None,))], sig)


def _params2(ins, a):
    c = concrete(ins[0].shape[-1], "the input features of `equivariant_linear2`")
    r = ins[0].rank
    ps = [P("weight", (a["out"], len(_ORDER2) * c), (Face("out", "out", 0, r - 1), Face("in", "in", 0, r - 1)))]
    if a["bias"]:
        ps.append(P("bias", (a["out"],), (Face("bias", "out", 0, r - 1),)))
    return ps


def _lower2(c):
    fin = c.ins[0].shape[-1].value
    x = c.args[0]
    n = c.size(0, c.ins[0].rank - 2)
    eye = f"torch.eye({n}, dtype={x}.dtype, device={x}.device).unsqueeze(-1)"
    diag = f"{x}.diagonal(dim1=-3, dim2=-2).transpose(-1, -2)"
    maps = ", ".join(m.format(x=x, eye=eye, diag=diag) for m in _ORDER2)
    bias = "" if c.a["bias"] else ", bias=False"
    return Lowered(f"nn.Linear({len(_ORDER2) * fin}, {c.a['out']}{bias})", f"{c.m}(torch.cat([{maps}], -1))")


register(OpDef(
    name="equivariant_linear2", inputs=("x",),
    attrs=(Attr("out", "int", doc="output features"), Attr("bias", "bool", True)),
    infer=_infer2, params=_params2, lower=_lower2,
    flops=lambda ins, outs, a: 2 * len(_ORDER2) * prod(ins[0].shape) * a["out"],
    traits=frozenset({"linear", "weighted"}), signal=S.dense, init_default=torch_default_init,
    check_attrs=_check, glyph="L_S2", equivariance=_equivariance,
    doc="The S_N-equivariant map of order-2 tensors [..., N, N, C] (edge features): the 15 maps of Maron et "
        "al. (identity, transpose, diagonal, row/column/total means broadcast along rows, columns or the "
        "diagonal), then one nn.Linear(15·C, out).",
))


# -- group convolutions over an image grid (Cohen and Welling 2016) ---------------------------------------
_ORDER = {"c4": 4, "d4": 8}


def _gconv_infer(ins, a, facts):
    from .conv import conv_out

    x = ins[0]
    need_float(x, "gconv2d")
    kind = a["group"]["kind"]
    g = _ORDER[kind]
    if x.rank not in (4, 5):
        raise OpError("E0202", f"gconv2d expects [B, C, H, W] (lifting) or [B, C, {g}, H, W] (a regular "
                      f"feature map of {kind}), got rank {x.rank}", arg=0)
    if x.rank == 5 and x.shape[2] != Dim.const(g):
        raise OpError("E0201", f"gconv2d over {kind} expects a group axis of {g} at position 2, got "
                      f"{x.shape[2]}", arg=0, help="a group axis comes from an earlier gconv2d of the same group")
    k, s, p = a["kernel"], a["stride"], a["padding"]
    if p == "same":
        if k % 2 == 0 or s != 1:
            raise OpError("E0111", "gconv2d: padding=\"same\" needs an odd kernel and stride 1")
        p = (k - 1) // 2
    sp = []
    for size in x.shape[-2:]:
        o = conv_out(size, k, s, p, 1)
        if o.is_const and o.value <= 0:
            raise OpError("E0201", f"gconv2d: kernel {k} is larger than the padded input size {size}", arg=0)
        sp.append(o)
    r = x.rank
    outs = (Ax(KEEP, (Ref(0, 0),)), Ax(NEW), Ax(NEW, name=kind.upper()),
            *(Ax(DERIVE, (Ref(0, r - 2 + i),), how="window") for i in range(2)))
    contracted = ((Ref(0, 1),),) + (((Ref(0, 2),),) if r == 5 else ())
    names = x.axis_names()
    return Out([TensorType.make((x.shape[0], Dim.const(a["out"]), Dim.const(g), *sp), x.dtype,
                                (names[0], None, None, *names[-2:]))],
               Signature((outs,), contracted=contracted), resolved={"padding": p})


def _gconv_params(ins, a):
    x = ins[0]
    c = concrete(x.shape[1], "the input channels of `gconv2d`")
    k = a["kernel"]
    reg = x.rank == 5
    shape = (a["out"], c) + ((_ORDER[a["group"]["kind"]],) if reg else ()) + (k, k)
    faces = (Face("out", "out", 0, 1), Face("in", "in", 0, 1)) + ((Face("in", "in", 0, 2),) if reg else ()) + \
        tuple(Face("window", "in", 0, x.rank - 2 + i) for i in range(2))
    ps = [P("weight", shape, faces)]
    if a["bias"]:
        ps.append(P("bias", (a["out"],), (Face("bias", "out", 0, 1),)))
    return ps


def _gconv_lower(c):
    a = c.a
    parts = [str(c.ins[0].shape[1].value), str(a["out"]), str(a["kernel"]), f"group={lit(a['group']['kind'])}"]
    if c.ins[0].rank == 5:
        parts.append("regular_in=True")
    if a["stride"] != 1:
        parts.append(f"stride={a['stride']}")
    if a["padding"]:
        parts.append(f"padding={a['padding']}")
    if not a["bias"]:
        parts.append("bias=False")
    return Lowered(f"GroupConv2d({', '.join(parts)})", f"{c.m}({c.args[0]})", ("prelude:symmetry",))


def _gconv_equivariance(q):
    """Lifting ([.., row, col] with plain channels) or regular ([.., regular, row, col]) in, a regular feature
    map out, when the windows sample the grid symmetrically; under another family, the grid must not be
    acted on."""
    from ..passes.equivariance import Verdict, _grid_window

    roles = q.roles[0]
    if q.family != "grid":
        if any(roles[1:]):
            return Verdict("broken", f"mixes or windows an axis that {q.kind} acts on")
        return None
    kind = q.attrs["group"]["kind"]
    want = ("row", "col") if len(roles) == 4 else ("regular", "row", "col")
    if tuple(roles[2:]) != want or roles[1]:
        return Verdict("broken", "needs the grid's rows and columns as its last two axes" +
                       (" and the group axis before them" if len(roles) == 5 else ""),
                       "a regular input comes from an earlier gconv2d of the same group")
    if kind != q.kind:
        if kind == "c4":
            return Verdict("broken", "rotates its filters but does not flip them: it is not equivariant to D4",
                           f"use `group=` a d4 group")
        return Verdict("unknown", "is a D4 convolution checked under C4: claim it under the D4 group")
    v = _grid_window({"kernel": q.attrs["kernel"], "stride": q.attrs["stride"], "padding": q.attrs["padding"]},
                     [q.ins[0].shape[-1]], conv=True, facts=q.facts)
    if v is not None:
        return Verdict(v[0], v[1], "stride 1 with padding (k - 1) / 2, or a size the stride divides")
    return Verdict("kept", out_roles=("", "", "regular", "row", "col"))


def _gconv_check(a):
    for n in ("kernel", "stride", "out"):
        if isinstance(a.get(n), int) and a[n] <= 0:
            raise OpError("E0111", f"`{n}` must be positive, got {a[n]}")
    p = a.get("padding")
    if not (p == "same" or (isinstance(p, int) and not isinstance(p, bool) and p >= 0)):
        raise OpError("E0111", f"`padding` of gconv2d must be a non-negative int or \"same\", got {p!r}")


register(OpDef(
    name="gconv2d", inputs=("x",),
    attrs=(Attr("out", "int", doc="output channels"), Attr("kernel", "int"),
           Attr("group", "group", doc="a `c4` or `d4` group of the file"), Attr("stride", "int", 1),
           Attr("padding", "any", 0, doc='int or "same"'), Attr("bias", "bool", True)),
    infer=_gconv_infer, params=_gconv_params, lower=_gconv_lower, check_attrs=_gconv_check,
    flops=lambda ins, outs, a: 2 * prod(outs[0].shape) * prod(ins[0].shape[1:-2]) * a["kernel"] * a["kernel"],
    traits=frozenset({"linear", "weighted", "conv"}), signal=S.dense, init_default=torch_default_init,
    glyph="G-conv", draw="conv", equivariance=_gconv_equivariance,
    doc="Group convolution over a C4 or D4 grid: [B, C, H, W] (lifting) or [B, C, |G|, H, W] (regular) -> "
        "[B, out, |G|, H', W']; each filter is seen rotated (and flipped) by every element, so rotating the "
        "input rotates the output and permutes its group axis.",
))


def _gpool_infer(ins, a, facts):
    x = ins[0]
    if x.rank != 5:
        raise OpError("E0202", f"group_pool expects [B, C, |G|, H, W] (from gconv2d), got rank {x.rank}", arg=0)
    if a["mode"] == "mean":
        need_float(x, "group_pool with mode=\"mean\"")
    keep = (0, 1, 3, 4)
    names = x.axis_names()
    return Out([TensorType.make(tuple(x.shape[i] for i in keep), x.dtype, tuple(names[i] for i in keep))],
               Signature((tuple(Ax(KEEP, (Ref(0, i),)) for i in keep),), reduced=(Ref(0, 2),)))


def _gpool_signal(c):
    x = c.ins[0]
    if x is None:
        return S.Result([None], [None])
    n = int(c.in_shapes[0][2])
    if c.a["mode"] == "max":
        return S.Result([S.maximum(x, n)], [None])
    return S.Result([S.average(c, float(n), over_features=False)], [None])


register(OpDef(
    name="group_pool", inputs=("x",),
    attrs=(Attr("mode", "str", "max", choices=("max", "mean")),),
    infer=_gpool_infer,
    lower=lambda c: Lowered(None, f"{c.args[0]}.{'amax' if c.a['mode'] == 'max' else 'mean'}(2)"),
    flops=lambda ins, outs, a: prod(ins[0].shape),
    traits=frozenset({"parameter_free", "reduce"}), glyph="max_G", draw="reduce", signal=_gpool_signal,
    doc="Max (or mean) over the group axis of a regular feature map [B, C, |G|, H, W] -> [B, C, H, W]: "
        "invariant to the group's permutation of it, so only the rotation of the grid remains.",
))
