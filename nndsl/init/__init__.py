"""Initialization rules: what a spec may say about how a parameter starts.

One record per rule: its arguments (in positional order, with defaults), the shapes it fits, and the
standard deviation it gives a parameter's entries (what the summary shows and signal analysis reads).
The front end needs nothing else; the PyTorch side of each rule is in nndsl/backends/torch_init.py,
emitted into the generated source. docs/init.md gives every formula.
"""
from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

# names a rule's arguments may use besides the block's parameters, bound per parameter
INIT_NAMES = ("fan_in", "fan_out", "numel", "depth", "branches", "branch_depth", "width")
# those that need the residual structure of the whole graph (nndsl/passes/topology.py)
TOPOLOGY_NAMES = ("depth", "branches", "branch_depth")

REQUIRED = object()

NONLINEARITIES = ("linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                  "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain PyTorch's `torch.nn.init.calculate_gain` recommends: the factor that keeps the variance of
    activations through the nonlinearity (relu √2, tanh 5/3, selu 3/4, leaky_relu √(2 / (1 + slope²)))."""
    if nonlinearity in ("linear", "identity", "sigmoid") or nonlinearity.startswith("conv"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unknown nonlinearity `{nonlinearity}` (one of {', '.join(NONLINEARITIES)})")


@dataclass(frozen=True)
class Shape:
    """What a rule knows of the parameter it initialises."""

    dims: tuple[int, ...]
    fan_in: Optional[int]
    fan_out: Optional[int]
    # where its layer sits (nndsl/passes/topology.py), for Fixup: the weight layers of its residual branch
    # (m, 0 outside one), whether it is the branch's last or the network's readout, residual branches (L)
    branch_depth: int = 0
    last: bool = False
    readout: bool = False
    branches: int = 0

    @property
    def numel(self) -> int:
        return math.prod(self.dims)

    def fans(self) -> tuple[int, int]:
        """fan_in and fan_out as the recipe computed them, else PyTorch's reading of the shape
        ([out, in, *window]: fan_in = in·window, fan_out = out·window)."""
        if self.fan_in is not None and self.fan_out is not None:
            return self.fan_in, self.fan_out
        d = self.dims
        if len(d) < 2:
            return (d[0] if d else 1), (d[0] if d else 1)
        rf = math.prod(d[2:])
        return d[1] * rf, d[0] * rf


def _kaiming_std(a: dict, s: Shape) -> float:
    fi, fo = s.fans()
    fan = fi if a["mode"] == "fan_in" else fo
    return calculate_gain(a["nonlinearity"], a["a"]) / math.sqrt(max(fan, 1))


def _need_rank(lo: int, hi: int | None = None, what: str = "") -> Callable[[dict, Shape], Optional[str]]:
    def check(a: dict, s: Shape) -> Optional[str]:
        r = len(s.dims)
        if r < lo or (hi is not None and r > hi):
            want = f"{lo}" if hi == lo else f"at least {lo}" if hi is None else f"{lo} to {hi}"
            return f"`{what}` needs a parameter with {want} axes, this one has {r}: {list(s.dims)}"
        return None
    return check


def _mode(a: dict, s: Shape) -> Optional[str]:
    if a["mode"] not in ("fan_in", "fan_out"):
        return f"`mode` is `fan_in` or `fan_out`, not `{a['mode']}`"
    if a["nonlinearity"] not in NONLINEARITIES:
        return f"unknown nonlinearity `{a['nonlinearity']}` (one of {', '.join(NONLINEARITIES)})"
    return None


def _identity(a: dict, s: Shape) -> Optional[str]:
    r = len(s.dims)
    if a["groups"] < 1:
        return f"`groups` must be at least 1, got {a['groups']}"
    if r == 2 or 3 <= r <= 5:
        if r >= 3 and s.dims[0] % a["groups"]:
            return f"`identity` with groups={a['groups']} needs the first axis ({s.dims[0]}) divisible by it"
        return None
    return f"`identity` needs a 2-d weight (a matrix) or a 3-d to 5-d convolution kernel, this one is {r}-d"


def _nonneg_std(a: dict, s: Shape) -> Optional[str]:
    return f"`std` must be at least 0, got {a['std']}" if a["std"] < 0 else None


def _bounds(a: dict, s: Shape) -> Optional[str]:
    return f"the lower bound {a['a']} is not below the upper bound {a['b']}" if not a["a"] < a["b"] else None


def _trunc(a: dict, s: Shape) -> Optional[str]:
    return _nonneg_std(a, s) or _bounds(a, s)


def _trunc_std(a: dict, s: Shape) -> float:
    """The standard deviation of N(mean, std²) truncated to [a, b]."""
    m, sd, lo, hi = a["mean"], a["std"], a["a"], a["b"]
    if sd == 0:
        return 0.0
    al, be = (lo - m) / sd, (hi - m) / sd
    phi = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)           # noqa: E731
    Phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))                  # noqa: E731
    z = Phi(be) - Phi(al)
    if z <= 0:
        return 0.0
    var = 1 + (al * phi(al) - be * phi(be)) / z - ((phi(al) - phi(be)) / z) ** 2
    return sd * math.sqrt(max(var, 0.0))


_GH: list[tuple[float, float]] = []


def gauss_hermite(n: int = 96) -> list[tuple[float, float]]:
    """Nodes and weights of n-point Gauss–Hermite quadrature (∫ e^{−x²} f(x) dx ≈ Σ w f(x)), by Newton's
    method on the normalised Hermite recurrence."""
    if _GH and len(_GH) == n:
        return _GH
    x, w = [0.0] * n, [0.0] * n
    pim4 = math.pi ** -0.25
    z = pp = 0.0
    for i in range((n + 1) // 2):
        if i == 0:
            z = math.sqrt(2 * n + 1) - 1.85575 * (2 * n + 1) ** -0.16667
        elif i == 1:
            z -= 1.14 * n ** 0.426 / z
        elif i == 2:
            z = 1.86 * z - 0.86 * x[0]
        elif i == 3:
            z = 1.91 * z - 0.91 * x[1]
        else:
            z = 2.0 * z - x[i - 2]
        for _ in range(100):
            p1, p2 = pim4, 0.0
            for j in range(n):
                p3, p2 = p2, p1
                p1 = z * math.sqrt(2.0 / (j + 1)) * p2 - math.sqrt(j / (j + 1)) * p3
            pp = math.sqrt(2.0 * n) * p2
            z1, z = z, z - p1 / pp
            if abs(z - z1) <= 1e-14:
                break
        x[i], x[n - 1 - i] = z, -z
        w[i] = w[n - 1 - i] = 2.0 / (pp * pp)
    _GH[:] = list(zip(x, w))
    return _GH


def gaussian_mean(f: Callable[[float], float]) -> float:
    """E[f(z)] for z ~ N(0, 1), by Gauss–Hermite quadrature."""
    r2 = math.sqrt(2.0)
    return sum(wi * f(r2 * xi) for xi, wi in gauss_hermite()) / math.sqrt(math.pi)


# the spec's own `act` definitions (name -> expression tree), visible while the init pass runs
USER_ACTS: ContextVar[dict] = ContextVar("user_acts", default={})


def activation(name: str):
    """The scalar function of an activation: an `act` of the spec (at its parameters' defaults), else an
    activation op with its default attributes; None when there is none of that name."""
    tree = USER_ACTS.get().get(name)
    if tree is not None:
        from ..ops.userfn import evaluate

        return lambda x: evaluate(tree, x)
    from .. import ops as O

    od = O.get(name)
    if od is None or od.scalar is None:
        return None
    attrs = {a.name: a.default for a in od.attrs}
    return lambda x: od.scalar(x, attrs)


def activations() -> list[str]:
    from .. import ops as O

    return sorted({*USER_ACTS.get(), *(n for n in O.all_names() if O.get(n).scalar is not None
                                       and O.get(n).name not in ("fn", "activation"))})


def _vp_std(a: dict, s: Shape) -> float:
    fi, fo = s.fans()
    fan = fi if a["mode"] == "fan_in" else fo
    phi = activation(a["act"])
    m2 = gaussian_mean(lambda z: phi(z) ** 2)
    return 1.0 / math.sqrt(max(fan, 1) * m2)


def _vp_check(a: dict, s: Shape) -> Optional[str]:
    if a["mode"] not in ("fan_in", "fan_out"):
        return f"`mode` is `fan_in` or `fan_out`, not `{a['mode']}`"
    phi = activation(a["act"])
    if phi is None:
        return f"`{a['act']}` is not an activation (one of {', '.join(activations())})"
    m2 = gaussian_mean(lambda z: phi(z) ** 2)
    if not math.isfinite(m2):
        return f"E[{a['act']}(z)²] is not finite for z ~ N(0, 1) (an overflow, or a log or sqrt of a negative)"
    if m2 <= 1e-12:
        return f"`{a['act']}` is zero almost everywhere on a unit Gaussian"
    return None


def fixup_scale(branches: int, branch_depth: int) -> float:
    """Fixup's factor for the weight layers of a residual branch other than its last: L^(−1/(2m−2)) for
    L branches of m layers ("Fixup Initialization", Zhang et al. 2019); 54 branches of 2 -> 0.1361."""
    if branch_depth < 2 or branches < 1:
        return 1.0
    return branches ** (-1.0 / (2 * branch_depth - 2))


def _fixup_std(a: dict, s: Shape) -> float:
    if len(s.dims) < 2 or s.readout or s.last:
        return 0.0                      # scalar biases, the classifier and each branch's last layer
    fi, _ = s.fans()
    return calculate_gain(a["nonlinearity"]) / math.sqrt(max(fi, 1)) * fixup_scale(s.branches, s.branch_depth)


def _fixup_check(a: dict, s: Shape) -> Optional[str]:
    if a["nonlinearity"] not in NONLINEARITIES:
        return f"unknown nonlinearity `{a['nonlinearity']}` (one of {', '.join(NONLINEARITIES)})"
    return None


def _hadamard_sum(rows: int, cols: int, n: int) -> int:
    """Σ of the top-left rows x cols block of the Sylvester Hadamard matrix of size n = 2^k, entry
    (−1)^popcount(i & j), from H_2n = [[H, H], [H, −H]] (O(k) distinct sub-blocks)."""
    return _hadamard_block(rows, cols, n, {})


def _hadamard_block(r: int, c: int, n: int, memo: dict) -> int:
    """(A module function: a closure that calls itself is a reference cycle.)"""
    if r <= 0 or c <= 0:
        return 0
    if n == 1:
        return 1
    key = (r, c, n)
    if key not in memo:
        h = n // 2
        memo[key] = (_hadamard_block(min(r, h), min(c, h), h, memo) + _hadamard_block(min(r, h), c - h, h, memo)
                     + _hadamard_block(r - h, min(c, h), h, memo) - _hadamard_block(r - h, c - h, h, memo))
    return memo[key]


def zero_one_matrix(rows: int, cols: int) -> tuple[float, float, float]:
    """ZerO's matrix ("ZerO Initialization", Zhao et al. 2022) for a [rows, cols] weight: the identity,
    truncated when rows <= cols; else c·H_k[:rows, :cols] with k = ⌈log2 rows⌉, c = 2^(−(k−1)/2) and H the
    Sylvester Hadamard matrix. Returns (c, Σ entries, Σ squares)."""
    if rows <= cols:
        return 1.0, float(rows), float(rows)
    k = (rows - 1).bit_length()
    c = 2.0 ** (-(k - 1) / 2)
    return c, c * _hadamard_sum(rows, cols, 2 ** k), c * c * rows * cols


def _zero_one_moments(a: dict, s: Shape) -> tuple[float, float]:
    g = a["groups"]
    _, total, sq = zero_one_matrix(s.dims[0] // g, s.dims[1])
    return total * g / max(s.numel, 1), sq * g / max(s.numel, 1)


def _zero_one_std(a: dict, s: Shape) -> float:
    m, m2 = _zero_one_moments(a, s)
    return math.sqrt(max(m2 - m * m, 0.0))


def _zero_one_check(a: dict, s: Shape) -> Optional[str]:
    r = len(s.dims)
    if a["groups"] < 1:
        return f"`groups` must be at least 1, got {a['groups']}"
    if not 2 <= r <= 5:
        return f"`ZerO` needs a 2-d weight (a matrix) or a 3-d to 5-d convolution kernel, this one is {r}-d"
    if s.dims[0] % a["groups"]:
        return f"`ZerO` with groups={a['groups']} needs the first axis ({s.dims[0]}) divisible by it"
    return None


def _conv_orth_check(a: dict, s: Shape) -> Optional[str]:
    r = len(s.dims)
    if not 3 <= r <= 5:
        return f"`conv_orthogonal` needs a 3-d to 5-d convolution kernel, this one is {r}-d (use `orthogonal` " \
               f"for a matrix)"
    if a["eps_std"] < 0:
        return f"`eps_std` must be at least 0, got {a['eps_std']}"
    return None


def _lora_std(a: dict, s: Shape) -> float:
    fi, _ = s.fans()
    return 0.0 if a["factor"] == "B" else 1.0 / math.sqrt(3.0 * max(fi, 1))


def _lora_check(a: dict, s: Shape) -> Optional[str]:
    if a["factor"] not in ("A", "B"):
        return f"`factor` is \"A\" (the down-projection, random) or \"B\" (the up-projection, zero), not " \
               f"`{a['factor']}`"
    return None


@dataclass(frozen=True)
class Rule:
    name: str
    args: tuple[tuple[str, Any], ...]          # (name, default or REQUIRED), in positional order
    formula: str                               # for docs and the summary
    std: Callable[[dict, Shape], Optional[float]]
    check: Optional[Callable[[dict, Shape], Optional[str]]] = None
    types: dict = field(default_factory=dict)  # argument -> "number" | "str" | "int" (default number)


def _r(name, args, formula, std, check=None, types=None) -> Rule:
    return Rule(name, tuple(args), formula, std, check, types or {})


RULES: dict[str, Rule] = {r.name: r for r in [
    _r("default", [], "PyTorch's own initialisation of the layer", lambda a, s: None),
    _r("zeros", [], "w = 0", lambda a, s: 0.0),
    _r("ones", [], "w = 1", lambda a, s: 0.0),
    _r("constant", [("value", REQUIRED)], "w = value", lambda a, s: 0.0),
    _r("normal", [("mean", 0.0), ("std", 1.0)], "w ~ N(mean, std²)", lambda a, s: a["std"], _nonneg_std),
    _r("uniform", [("a", 0.0), ("b", 1.0)], "w ~ U(a, b)", lambda a, s: (a["b"] - a["a"]) / math.sqrt(12), _bounds),
    _r("truncated_normal", [("mean", 0.0), ("std", 1.0), ("a", -2.0), ("b", 2.0)],
       "w ~ N(mean, std²) truncated to [a, b] (absolute bounds)", _trunc_std, _trunc),
    _r("xavier_uniform", [("gain", 1.0)], "w ~ U(−b, b), b = gain·√(6 / (fan_in + fan_out))",
       lambda a, s: a["gain"] * math.sqrt(2.0 / max(sum(s.fans()), 1))),
    _r("xavier_normal", [("gain", 1.0)], "w ~ N(0, σ²), σ = gain·√(2 / (fan_in + fan_out))",
       lambda a, s: a["gain"] * math.sqrt(2.0 / max(sum(s.fans()), 1))),
    _r("kaiming_uniform", [("a", 0.0), ("mode", "fan_in"), ("nonlinearity", "leaky_relu")],
       "w ~ U(−b, b), b = gain·√(3 / fan), gain = calculate_gain(nonlinearity, a)", _kaiming_std, _mode,
       {"mode": "str", "nonlinearity": "str"}),
    _r("kaiming_normal", [("a", 0.0), ("mode", "fan_in"), ("nonlinearity", "leaky_relu")],
       "w ~ N(0, σ²), σ = gain / √fan, gain = calculate_gain(nonlinearity, a)", _kaiming_std, _mode,
       {"mode": "str", "nonlinearity": "str"}),
    _r("orthogonal", [("gain", 1.0)],
       "the weight as a matrix [rows, rest] is (semi-)orthogonal, times gain (QR of a Gaussian matrix)",
       lambda a, s: a["gain"] / math.sqrt(max(s.dims[0], math.prod(s.dims[1:]))), _need_rank(2, None, "orthogonal")),
    _r("variance_preserving", [("act", "relu"), ("mode", "fan_in")],
       "w ~ N(0, σ²), σ² = 1 / (fan · E[act(z)²]), z ~ N(0, 1) (Gauss–Hermite quadrature): unit variance in, "
       "unit second moment out", _vp_std, _vp_check, {"act": "str", "mode": "str"}),
    _r("identity", [("gain", 1.0), ("groups", 1)],
       "a matrix: gain·I (padded with zeros when not square); a kernel: gain·Dirac delta per channel",
       lambda a, s: None, _identity, {"groups": "int"}),
    _r("ZerO", [("groups", 1)],
       "deterministic: the identity (truncated) when fan_out <= fan_in, else c·H[:out, :in] (Hadamard, "
       "c = 2^(−(k−1)/2), k = ⌈log2 out⌉); a kernel gets it at its centre tap", _zero_one_std, _zero_one_check,
       {"groups": "int"}),
    _r("conv_orthogonal", [("gain", math.sqrt(2.0)), ("eps_std", 0.05)],
       "per filter, orthonormal real Fourier coefficients (QR of a Gaussian) transformed back to the kernel, "
       "plus noise of eps_std relative, scaled to variance gain² / fan_in",
       lambda a, s: a["gain"] / math.sqrt(max(s.fans()[0], 1)), _conv_orth_check),
    _r("fixup", [("nonlinearity", "relu")],
       "0 for biases, the classifier and the last layer of each residual branch; N(0, gain²/fan_in)·"
       "L^(−1/(2m−2)) for the other layers of a branch (L branches, m layers); N(0, gain²/fan_in) elsewhere",
       _fixup_std, _fixup_check, {"nonlinearity": "str"}),
    _r("lora", [("factor", REQUIRED)],
       "factor \"A\": U(−1/√fan_in, 1/√fan_in) (PyTorch's Linear default, as peft); factor \"B\": 0",
       _lora_std, _lora_check, {"factor": "str"}),
]}

# `frozen(rule)`: any rule, and the parameter is not trained (requires_grad off); `frozen` alone keeps the
# layer's default initialisation
FROZEN = "frozen"


def rule_names() -> list[str]:
    return sorted([*RULES, FROZEN])


def moments(rule: str, a: dict, s: Shape) -> Optional[tuple[float, float]]:
    """(mean, second moment) of the entries a rule gives a parameter: what signal analysis reads.
    None for `default` (the op's own PyTorch initialisation decides)."""
    if rule == "default":
        return None
    if rule == "zeros":
        return 0.0, 0.0
    if rule == "ones":
        return 1.0, 1.0
    if rule == "constant":
        return float(a["value"]), float(a["value"]) ** 2
    if rule == "uniform":
        m = (a["a"] + a["b"]) / 2
        return m, m * m + (a["b"] - a["a"]) ** 2 / 12
    if rule in ("normal", "truncated_normal"):
        sd = RULES[rule].std(a, s)
        return float(a["mean"]), float(a["mean"]) ** 2 + sd * sd
    if rule == "ZerO":
        return _zero_one_moments(a, s)
    if rule == "identity":
        d = s.dims
        if len(d) == 2:
            nz = min(d)
        else:
            g = a["groups"]
            nz = g * min(d[0] // g, d[1])
        frac = nz / max(s.numel, 1)
        return a["gain"] * frac, a["gain"] ** 2 * frac
    sd = RULES[rule].std(a, s)
    return 0.0, (sd or 0.0) ** 2


# what the generated module does: a few primitives, each one torch.nn.init call (or a fill) with the
# numbers the compiler computed from the rule, the parameter's fans and its shape
PRIMITIVES = ("fill", "normal", "uniform", "trunc_normal", "orthogonal", "identity", "zero_one", "conv_orthogonal")


def lower(rule: str, a: dict, s: Shape) -> Optional[tuple[str, dict]]:
    """The primitive and its numbers for a rule applied to a parameter; None keeps PyTorch's default."""
    if rule == "default":
        return None
    if rule == "zeros":
        return "fill", {"value": 0.0}
    if rule == "ones":
        return "fill", {"value": 1.0}
    if rule == "constant":
        return "fill", {"value": float(a["value"])}
    if rule == "normal":
        return "normal", {"mean": float(a["mean"]), "std": float(a["std"])}
    if rule == "uniform":
        return "uniform", {"a": float(a["a"]), "b": float(a["b"])}
    if rule == "truncated_normal":
        return "trunc_normal", {k: float(a[k]) for k in ("mean", "std", "a", "b")}
    if rule in ("xavier_normal", "kaiming_normal", "variance_preserving"):
        return "normal", {"mean": 0.0, "std": RULES[rule].std(a, s)}
    if rule in ("xavier_uniform", "kaiming_uniform"):
        b = math.sqrt(3.0) * RULES[rule].std(a, s)
        return "uniform", {"a": -b, "b": b}
    if rule == "orthogonal":
        return "orthogonal", {"gain": float(a["gain"])}
    if rule == "identity":
        return "identity", {"gain": float(a["gain"]), "groups": int(a["groups"])}
    if rule == "ZerO":
        return "zero_one", {"groups": int(a["groups"])}
    if rule == "conv_orthogonal":
        return "conv_orthogonal", {"std": RULES[rule].std(a, s), "eps": float(a["eps_std"])}
    if rule in ("fixup", "lora"):
        std = RULES[rule].std(a, s)
        if std == 0.0:
            return "fill", {"value": 0.0}
        if rule == "lora":
            b = math.sqrt(3.0) * std
            return "uniform", {"a": -b, "b": b}
        return "normal", {"mean": 0.0, "std": std}
    raise KeyError(rule)


def lsuv(model, batch, tol: float = 0.1, max_iter: int = 10, seed: int = 0, progress=None):
    """LSUV on a compiled model (in place): orthonormal pre-init, then each dense and convolution layer
    rescaled until its output variance on `batch` is within `tol` of 1. See nndsl/init/layerwise.py."""
    from .layerwise import lsuv as run

    return run(model, batch, tol=tol, max_iter=max_iter, seed=seed, progress=progress)
