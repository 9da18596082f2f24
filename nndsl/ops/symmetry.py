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
    """Kept for a permutation of the set axis (and of any axis but the features); the features are mixed."""
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
