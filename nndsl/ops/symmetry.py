"""Equivariant layers: `equivariant_linear(x, out, axis=N)`, the S_N-equivariant map of a set of
feature vectors (DeepSets, Zaheer et al. 2017): y_n = Λ x_n + Γ mean_m x_m + b along `axis`. Its two
free weights per channel pair are the whole basis the solver finds for permutation -> permutation maps
(nndsl.symmetry: dimension 2); it is stored as one nn.Linear over [x_n, mean x], weight [out, 2C]."""
from __future__ import annotations

from ..dims import Dim
from ..recipe import KEEP, NEW, Ax, Face, Out, Ref, Signature
from ..types import TensorType
from .. import signal as S
from .registry import P, Attr, Lowered, OpDef, OpError, concrete, need_float, prod, register, torch_default_init
from .tensor import resolve_axis


def _infer(ins, a, facts):
    x = ins[0]
    need_float(x, "equivariant_linear")
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
    c = concrete(ins[0].shape[-1], "the input features of `equivariant_linear`")
    r = ins[0].rank
    ps = [P("weight", (a["out"], 2 * c), (Face("out", "out", 0, r - 1), Face("in", "in", 0, r - 1)))]
    if a["bias"]:
        ps.append(P("bias", (a["out"],), (Face("bias", "out", 0, r - 1),)))
    return ps


def _lower(c):
    fin = c.ins[0].shape[-1].value
    ax = c.a["axis"]
    x = c.args[0]
    bias = "" if c.a["bias"] else ", bias=False"
    pooled = f"{x}.mean({ax}, keepdim=True).expand_as({x})"
    return Lowered(f"nn.Linear({2 * fin}, {c.a['out']}{bias})", f"{c.m}(torch.cat([{x}, {pooled}], -1))")


def _check(a):
    if isinstance(a["out"], int) and a["out"] <= 0:
        raise OpError("E0111", f"`out` must be positive, got {a['out']}")


def _equivariance(a: dict, axis: int, rank: int):
    """Kept for a permutation of the set axes (and of any axis but the features); the features are mixed."""
    return "it mixes the feature axis" if axis == rank - 1 else None


register(OpDef(
    name="equivariant_linear", inputs=("x",),
    attrs=(Attr("out", "int", doc="output features"), Attr("axis", "axes", 1, doc="the set axis (permuted)"),
           Attr("bias", "bool", True)),
    infer=_infer, params=_params, lower=_lower,
    flops=lambda ins, outs, a: 4 * prod(ins[0].shape) * a["out"],
    traits=frozenset({"linear", "weighted"}), signal=S.dense, init_default=torch_default_init,
    check_attrs=_check, glyph="L_S", equivariance=_equivariance,
    doc="y_n = Λ x_n + Γ mean_m x_m + b over the set `axis`: equivariant under permutations of it "
        "(DeepSets); one nn.Linear over [x_n, mean x].",
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
