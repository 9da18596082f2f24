"""Pointwise activations, dropout and softmax."""
from __future__ import annotations

import math

from ..dims import Dim
from ..recipe import Out
from .. import signal as S
from .registry import pyval, Attr, Lowered, OpDef, OpError, need_float, prod, register


def _same(ins, a, facts):
    need_float(ins[0], "an activation")
    return [ins[0]]


def _act(name, call, attrs=(), flops_per=1, aliases=(), doc="", check=None, inplace=False, scalar=None):
    traits = {"pointwise", "activation", "parameter_free", "shape_preserving"} | ({"inplace"} if inplace else set())
    register(OpDef(
        name=name, inputs=("x",), attrs=attrs, infer=_same,
        flops=lambda ins, outs, a: flops_per * prod(ins[0].shape),
        lower=lambda c: Lowered(None, call(c)),
        traits=frozenset(traits),
        aliases=aliases, glyph=name, doc=doc, check_attrs=check, scalar=scalar,
    ))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _softplus(x: float, beta: float = 1.0, threshold: float = 20.0) -> float:
    return x if beta * x > threshold else math.log1p(math.exp(beta * x)) / beta


def _gelu_tanh(x: float) -> float:
    return 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


_ip = lambda c: ", inplace=True" if c.inplace else ""  # noqa: E731
_act("relu", lambda c: f"F.relu({c.args[0]}{_ip(c)})", doc="max(0, x)", inplace=True, scalar=lambda x, a: max(x, 0.0))
_act("leaky_relu", lambda c: f"F.leaky_relu({c.args[0]}, {pyval(c.a['slope'])}{_ip(c)})",
     attrs=(Attr("slope", "float", 0.01),), flops_per=2, doc="max(0, x) + slope * min(0, x)", inplace=True,
     scalar=lambda x, a: x if x > 0 else a["slope"] * x)


def _gelu(c):
    if c.a["approximate"] == "tanh":
        return f"F.gelu({c.args[0]}, approximate='tanh')"
    return f"F.gelu({c.args[0]})"


def _choice(attr, choices):
    def check(a):
        if a[attr] not in choices:
            raise OpError("E0111", f"`{attr}` must be one of {', '.join(map(repr, choices))}, got {a[attr]!r}")
    return check


_act("gelu", _gelu, attrs=(Attr("approximate", "str", "none", choices=("none", "tanh")),), flops_per=8,
     doc="Gaussian error linear unit; approximate=\"tanh\" for GPT-2's variant",
     check=_choice("approximate", ("none", "tanh")),
     scalar=lambda x, a: _gelu_tanh(x) if a["approximate"] == "tanh" else 0.5 * x * (1 + math.erf(x / math.sqrt(2))))
_act("silu", lambda c: f"F.silu({c.args[0]})", flops_per=4, aliases=("swish",), doc="x * sigmoid(x)",
     scalar=lambda x, a: x * _sigmoid(x))
_act("tanh", lambda c: f"torch.tanh({c.args[0]})", flops_per=4, doc="Hyperbolic tangent.",
     scalar=lambda x, a: math.tanh(x))
_act("sin", lambda c: f"torch.sin({c.args[0]})", flops_per=4, doc="sine (SIREN's activation)",
     scalar=lambda x, a: math.sin(x))
# elementwise math; on numbers the same names compute when the spec is checked (evaluate.MATH)
_act("exp", lambda c: f"torch.exp({c.args[0]})", flops_per=4, doc="e**x (on a number: computed when checked)",
     scalar=lambda x, a: math.exp(min(x, 700.0)))
_act("log", lambda c: f"torch.log({c.args[0]})", flops_per=4,
     doc="natural logarithm (on a number: computed when checked)")
_act("sqrt", lambda c: f"torch.sqrt({c.args[0]})", flops_per=4,
     doc="square root (on a number: computed when checked)")
_act("cos", lambda c: f"torch.cos({c.args[0]})", flops_per=4, doc="cosine (RoPE's tables)",
     scalar=lambda x, a: math.cos(x))
_act("abs", lambda c: f"torch.abs({c.args[0]})", doc="|x| (on a number: computed when checked)",
     scalar=lambda x, a: abs(x))
_act("sigmoid", lambda c: f"torch.sigmoid({c.args[0]})", flops_per=4, doc="1 / (1 + exp(-x))",
     scalar=lambda x, a: _sigmoid(x))
_act("softplus", lambda c: f"F.softplus({c.args[0]}, beta={pyval(c.a['beta'])}, threshold={pyval(c.a['threshold'])})",
     attrs=(Attr("beta", "float", 1.0, lo=0, lo_open=True), Attr("threshold", "float", 20.0)), flops_per=4,
     doc="log(1 + exp(beta x)) / beta, linear above `threshold`.",
     scalar=lambda x, a: _softplus(x, a["beta"], a["threshold"]))
_act("elu", lambda c: f"F.elu({c.args[0]}, alpha={pyval(c.a['alpha'])})", attrs=(Attr("alpha", "float", 1.0),),
     flops_per=4, doc="x for x > 0, alpha (exp(x) - 1) otherwise.",
     scalar=lambda x, a: x if x > 0 else a["alpha"] * math.expm1(x))


_act("relu6", lambda c: f"F.relu6({c.args[0]})", flops_per=2, doc="min(max(0, x), 6) (MobileNetV2)",
     scalar=lambda x, a: min(max(x, 0.0), 6.0))
_act("hardswish", lambda c: f"F.hardswish({c.args[0]})", flops_per=4, doc="x * relu6(x + 3) / 6 (MobileNetV3)",
     scalar=lambda x, a: x * min(max(x + 3, 0.0), 6.0) / 6)
_act("hardsigmoid", lambda c: f"F.hardsigmoid({c.args[0]})", flops_per=3, doc="relu6(x + 3) / 6",
     scalar=lambda x, a: min(max(x + 3, 0.0), 6.0) / 6)
_act("mish", lambda c: f"F.mish({c.args[0]})", flops_per=6, doc="x * tanh(softplus(x))",
     scalar=lambda x, a: x * math.tanh(_softplus(x)))


def _hardtanh_check(a):
    if not a["min"] < a["max"]:
        raise OpError("E0111", f"hardtanh: `min` ({a['min']}) must be below `max` ({a['max']})")


_act("hardtanh", lambda c: f"F.hardtanh({c.args[0]}, {pyval(c.a['min'])}, {pyval(c.a['max'])})",
     attrs=(Attr("min", "float", -1.0), Attr("max", "float", 1.0)), flops_per=2,
     doc="x clipped to [min, max]", check=_hardtanh_check, scalar=lambda x, a: min(max(x, a["min"]), a["max"]))


def _clamp_check(a):
    if a["min"] is None and a["max"] is None:
        raise OpError("E0107", "clamp needs `min`, `max` or both")
    if a["min"] is not None and a["max"] is not None and a["min"] > a["max"]:
        raise OpError("E0111", f"clamp: `min` ({a['min']}) is above `max` ({a['max']})")


def _clamp(c):
    kw = [f"{k}={pyval(c.a[k])}" for k in ("min", "max") if c.a[k] is not None]
    return f"torch.clamp({c.args[0]}, {', '.join(kw)})"


_act("clamp", _clamp, attrs=(Attr("min", "float", None), Attr("max", "float", None)), flops_per=2,
     doc="x limited to [min, max]; either bound may be left out", check=_clamp_check,
     scalar=lambda x, a: min(max(x, a["min"] if a["min"] is not None else -math.inf),
                             a["max"] if a["max"] is not None else math.inf))


def _sparse_check(a):
    if a["tau"] < 0:
        raise OpError("E0111", f"`tau` must be at least 0, got {a['tau']}")
    if a["clip"] is not None and a["clip"] <= 0:
        raise OpError("E0111", f"`clip` must be positive, got {a['clip']}")


def _shifted_relu(x: float, a: dict) -> float:
    y = max(x - a["tau"], 0.0)
    return y if a["clip"] is None else min(y, a["clip"])


def _soft_threshold(x: float, a: dict) -> float:
    y = math.copysign(max(abs(x) - a["tau"], 0.0), x)
    return y if a["clip"] is None else max(min(y, a["clip"]), -a["clip"])


def _shifted_relu_lower(c):
    x, t, m = c.args[0], pyval(c.a["tau"]), c.a["clip"]
    return f"F.relu({x} - {t})" if m is None else f"torch.clamp({x} - {t}, 0.0, {pyval(m)})"


def _soft_threshold_lower(c):
    x, t, m = c.args[0], pyval(c.a["tau"]), c.a["clip"]
    return f"F.softshrink({x}, {t})" if m is None else f"torch.clamp(F.softshrink({x}, {t}), -{pyval(m)}, {pyval(m)})"


_SPARSE_ATTRS = (Attr("tau", "float", doc="threshold", lo=0), Attr("clip", "float", None, doc="magnitude cap"))
_act("shifted_relu", _shifted_relu_lower, attrs=_SPARSE_ATTRS, flops_per=2, check=_sparse_check,
     doc="max(0, x − tau), capped at `clip`: a sparsity-inducing activation (unstable at init without the cap)",
     scalar=_shifted_relu)
_act("soft_threshold", _soft_threshold_lower, attrs=_SPARSE_ATTRS, flops_per=2, check=_sparse_check,
     aliases=("softshrink",), doc="sign(x)·max(|x| − tau, 0), capped at ±`clip` (soft thresholding)",
     scalar=_soft_threshold)


def _identity_infer(ins, a, facts):
    return [ins[0]]


register(OpDef(
    name="identity", inputs=("x",), infer=_identity_infer, flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(None, c.args[0]),
    traits=frozenset({"pointwise", "parameter_free", "shape_preserving"}), glyph="id", draw="alias", doc="y = x",
    signal=S.same,
))


def _softmax_infer(ins, a, facts):
    x = ins[0]
    need_float(x, "softmax")
    from .tensor import resolve_axis
    return Out([x], resolved={"axis": resolve_axis(x, a["axis"])})


def _softmax(name, fn):
    register(OpDef(
        name=name, inputs=("x",), attrs=(Attr("axis", "axes", -1),), infer=_softmax_infer,
        flops=lambda ins, outs, a: 5 * prod(ins[0].shape),
        lower=lambda c: Lowered(None, f"{fn}({c.args[0]}, dim={c.a['axis']})"),
        traits=frozenset({"activation", "parameter_free", "shape_preserving"}), glyph=name,
        draw="softmax", draw_on=lambda a, rank: (a["axis"],), signal=S.softmax if name == "softmax" else S.log_softmax,
        doc=f"{name} along one axis (default the last).",
    ))


_softmax("softmax", "F.softmax")
_softmax("log_softmax", "F.log_softmax")


def _dropout_check(a):
    if not 0.0 <= a["p"] <= 1.0:
        raise OpError("E0111", f"dropout probability must be in [0, 1], got {a['p']}")


register(OpDef(
    name="dropout", inputs=("x",), attrs=(Attr("p", "float", 0.5, lo=0, hi=1),), infer=_same,
    flops=lambda ins, outs, a: prod(ins[0].shape),
    lower=lambda c: Lowered(None, f"F.dropout({c.args[0]}, p={pyval(c.a['p'])}, training=self.training)"
                            if c.a["p"] > 0 else c.args[0]),
    traits=frozenset({"pointwise", "parameter_free", "shape_preserving", "random"}), check_attrs=_dropout_check,
    signal=S.dropout,
    glyph="drop", doc="Zero elements with probability p during training.",
))

def _drop_path_check(a):
    if not 0.0 <= a["p"] < 1.0:
        raise OpError("E0111", f"drop_path probability must be in [0, 1), got {a['p']}")


def _drop_path_infer(ins, a, facts):
    x = ins[0]
    need_float(x, "drop_path")
    if x.rank < 1:
        raise OpError("E0202", "drop_path needs a batch axis: a tensor of rank 1 or more", arg=0)
    return [x]


def _drop_path_lower(c):
    x, p = c.args[0], c.a["p"]
    if p == 0:
        return Lowered(None, x)
    keep = pyval(1.0 - p)
    mask = f"{x}.new_empty(({x}.shape[0],) + (1,) * ({x}.dim() - 1)).bernoulli_({keep})"
    return Lowered(None, f"({x} * {mask} / {keep} if self.training else {x})")


register(OpDef(
    name="drop_path", inputs=("x",), attrs=(Attr("p", "float", 0.0, lo=0, hi=1),), infer=_drop_path_infer,
    flops=lambda ins, outs, a: prod(ins[0].shape), lower=_drop_path_lower,
    traits=frozenset({"parameter_free", "shape_preserving", "random"}), check_attrs=_drop_path_check,
    signal=S.dropout,
    aliases=("stochastic_depth",), glyph="droppath",
    doc="Stochastic depth: in training, zero a whole sample with probability p (scaling the rest by "
        "1/(1-p)); the identity in eval mode (EfficientNet, ConvNeXt, Swin).",
))

_BY_NAME = {
    "relu": lambda x: f"F.relu({x})", "gelu": lambda x: f"F.gelu({x})",
    "gelu_tanh": lambda x: f"F.gelu({x}, approximate='tanh')", "silu": lambda x: f"F.silu({x})",
    "tanh": lambda x: f"torch.tanh({x})", "sigmoid": lambda x: f"torch.sigmoid({x})",
    "softplus": lambda x: f"F.softplus({x})", "elu": lambda x: f"F.elu({x})",
    "leaky_relu": lambda x: f"F.leaky_relu({x})", "identity": lambda x: x,
    "relu6": lambda x: f"F.relu6({x})", "hardswish": lambda x: f"F.hardswish({x})",
    "hardsigmoid": lambda x: f"F.hardsigmoid({x})", "mish": lambda x: f"F.mish({x})",
}

_FN_OP = {"gelu_tanh": ("gelu", {"approximate": "tanh"})}


def _by_name_scalar(fn: str):
    """The scalar form of `activation(fn=...)`: the named op's own, with its default attributes."""
    if fn == "identity":
        return lambda x: x
    from .registry import get

    op, attrs = _FN_OP.get(fn, (fn, {}))
    d = get(op)
    full = {at.name: at.default for at in d.attrs}
    full.update(attrs)
    return lambda x: d.scalar(x, full)


register(OpDef(
    name="activation", inputs=("x",), attrs=(Attr("fn", "str", "relu", choices=tuple(_BY_NAME)),),
    infer=_same, flops=lambda ins, outs, a: 4 * prod(ins[0].shape),
    lower=lambda c: Lowered(None, _BY_NAME[c.a["fn"]](c.args[0])),
    traits=frozenset({"pointwise", "activation", "parameter_free", "shape_preserving"}),
    aliases=("act",), glyph="φ", check_attrs=_choice("fn", tuple(_BY_NAME)),
    scalar=lambda x, a: _by_name_scalar(a["fn"])(x),
    doc="An activation chosen by name, for blocks parametrised by their nonlinearity.",
))
