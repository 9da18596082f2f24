"""The mean-field signal model: what each op does to the statistics of the entries of a tensor at init.

A tensor's entries are described by three numbers, over random weights and random inputs:

    q   the second moment of an entry, E[h²] (the "pre-activation variance" of mean-field theory)
    mu  the mean of an entry over the features of one sample (what a LayerNorm subtracts)
    k   the covariance of one feature between two different samples or positions, E[h(x)·h(x')]
        (what averaging over tokens cannot remove: attention, pooling, a mean over positions)

An op's rule maps its inputs' stats to its outputs' stats and says how it scales the second moment of a
gradient on its way back (chi, per input). Rules are fields of the op's own declaration (`OpDef.signal`);
the defaults here follow from traits: a pointwise activation integrates its scalar form against a Gaussian
(Gauss–Hermite quadrature), a layout op moves entries without changing them. The pass that walks the IR is
nndsl/passes/signal.py; docs/init.md gives the formulas.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass(frozen=True, slots=True)
class Stat:
    q: float
    mu: float = 0.0
    k: float = 0.0

    def scaled(self, c: float) -> "Stat":
        return Stat(self.q * c * c, self.mu * c, self.k * c * c)


@dataclass
class Ctx:
    """What a signal rule sees of one node."""

    node: Any                            # ir.Node
    a: dict                              # resolved attributes
    ins: list[Optional[Stat]]            # one per tensor input (None: not a float tensor / unknown)
    in_shapes: list[tuple]               # sizes as numbers (free dims at their assumed value)
    out_shapes: list[tuple]
    weights: Callable[[str], Optional[tuple[float, float]]]   # parameter name -> (mean, second moment)
    fans: Callable[[str], tuple[int, int]]                    # parameter name -> (fan_in, fan_out)
    feature: Callable[[int, int], bool]                       # (input, axis) -> a feature axis (not a
                                                              # batch, sequence or spatial one)
    weighted_in: Callable[[int], bool]                        # input i is a parameter (a weight)


@dataclass
class Result:
    outs: list[Optional[Stat]]
    chi: list[Optional[float]]           # per input: E[grad_in²] / E[grad_out²]; None derives q_out / q_in


# -- Gaussian expectations --------------------------------------------------------------------------
_GH2: list = []


def _nodes2():
    if not _GH2:
        _GH2.extend((math.sqrt(2) * x, w / math.sqrt(math.pi)) for x, w in _gh(32))
    return _GH2


def _gh(n):
    from .init import gauss_hermite
    # gauss_hermite caches the last size asked; the pass uses 32 points here and 96 for 1-d integrals
    return list(gauss_hermite(n))


_GRID: list = []


def _nodes1():
    """A midpoint rule for E[f(z)], z ~ N(0, 1), on [-10, 10] with step 1/80: activations have kinks
    (relu, clamps, thresholds) where Gauss–Hermite converges slowly (0.4% off for E[relu]); this rule
    is within ~1e-5 there and spectrally accurate for smooth ones."""
    if not _GRID:
        h = 1.0 / 80
        n = 800
        c = h / math.sqrt(2 * math.pi)
        # midpoints: no node on 0, where most kinks are
        _GRID.extend(((i + 0.5) * h, c * math.exp(-((i + 0.5) * h) ** 2 / 2)) for i in range(-n, n))
    return _GRID


def _safe(f, x):
    try:
        v = f(x)
    except (OverflowError, ValueError, ZeroDivisionError):
        return math.nan
    return v if isinstance(v, (int, float)) else math.nan


def expect(f: Callable[[float], float], mean: float, sd: float) -> float:
    """E[f(mean + sd·z)], z ~ N(0, 1)."""
    return sum(w * _safe(f, mean + sd * x) for x, w in _nodes1())


def through(phi: Callable[[float], float], s: Stat) -> tuple[Stat, float]:
    """The stats after a pointwise function of entries with stats `s` (entries Gaussian), and
    E[phi'(z)²] (the backward factor)."""
    var = max(s.q - s.mu * s.mu, 0.0)
    sd = math.sqrt(var)
    mu = expect(phi, s.mu, sd)
    q = expect(lambda x: phi(x) ** 2, s.mu, sd)
    h = 1e-4 * max(1.0, sd)
    dphi2 = expect(lambda x: ((phi(x + h) - phi(x - h)) / (2 * h)) ** 2, s.mu, sd)
    # two samples: covariance k - mu² of one feature across samples, correlation rho
    rho = 0.0 if var <= 0 else max(-1.0, min(1.0, (s.k - s.mu * s.mu) / var))
    if abs(rho) < 1e-9:
        k = mu * mu
    elif rho > 1 - 1e-9:
        k = q
    else:
        c = math.sqrt(1 - rho * rho)
        nodes = _nodes2()
        k = 0.0
        for x, wx in nodes:
            fx = _safe(phi, s.mu + sd * x)
            inner = sum(wy * _safe(phi, s.mu + sd * (rho * x + c * y)) for y, wy in nodes)
            k += wx * fx * inner
    return Stat(q, mu, k), dphi2


_CACHE: dict = {}


def pointwise(phi_key, phi, s: Stat) -> tuple[Stat, float]:
    key = (phi_key, round(s.q, 12), round(s.mu, 12), round(s.k, 12))
    got = _CACHE.get(key)
    if got is None:
        if len(_CACHE) > 50_000:
            _CACHE.clear()
        got = _CACHE[key] = through(phi, s)
    return got


def normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def expected_max(n: int) -> tuple[float, float]:
    """E[max z_i] and E[(max z_i)²] for n independent standard normals."""
    if n <= 1:
        return 0.0, 1.0
    dens = lambda x: n * normal_cdf(x) ** (n - 1)        # noqa: E731  (times the normal density)
    return expect(lambda x: x * dens(x), 0.0, 1.0), expect(lambda x: x * x * dens(x), 0.0, 1.0)


# -- rules shared by op families (each op names its own in its declaration) ---------------------------
def _wmom(c: Ctx, name: str) -> tuple[float, float]:
    m = c.weights(name)
    return m if m is not None else (0.0, 0.0)


def dense(c: Ctx) -> Result:
    """A weighted contraction over the input's features (linear, convolution): h = Σ_j w_j x_j + b,
    fan_in terms, weights independent of the input."""
    x = c.ins[0]
    if x is None:
        return Result([None], [None])
    fin, fout = c.fans("weight")
    wm, w2 = _wmom(c, "weight")
    bm, b2 = _wmom(c, "bias") if c.weights("bias") is not None else (0.0, 0.0)
    cross = fin * (fin - 1) * wm * wm * x.mu * x.mu        # a non-zero weight mean sums the feature mean
    q = fin * w2 * x.q + cross + b2 + 2 * bm * fin * wm * x.mu
    mu = fin * wm * x.mu + bm
    k = fin * w2 * x.k + cross + b2 + 2 * bm * fin * wm * x.mu
    return Result([Stat(q, mu, min(k, q))], [fout * w2])


def lookup(c: Ctx) -> Result:
    """An embedding: each output is a row of the table."""
    wm, w2 = _wmom(c, "weight")
    return Result([Stat(w2, wm, wm * wm)], [None])


def free_param(c: Ctx) -> Result:
    wm, w2 = _wmom(c, "")
    return Result([Stat(w2, wm, wm * wm)], [])


def normalize(center: bool, across_batch: bool = False):
    """A normalization layer: unit second moment after centering (LayerNorm, GroupNorm, BatchNorm) or
    not (RMSNorm), then the affine scale and shift."""
    def rule(c: Ctx) -> Result:
        x = c.ins[0]
        if x is None:
            return Result([None], [None])
        var = x.q - x.mu * x.mu if center else x.q
        if var <= 0:
            return Result([None], [None])
        if across_batch:
            n = Stat(1.0, 0.0, 0.0)
        elif center:
            n = Stat(1.0, 0.0, max(min((x.k - x.mu * x.mu) / var, 1.0), -1.0))
        else:
            n = Stat(1.0, x.mu / math.sqrt(var), min(x.k / var, 1.0))
        g = c.weights("weight")
        b = c.weights("bias")
        gm, g2 = g if g is not None else (1.0, 1.0)
        bm, b2 = b if b is not None else (0.0, 0.0)
        out = Stat(g2 * n.q + b2 + 2 * gm * bm * n.mu, gm * n.mu + bm, g2 * n.k + b2 + 2 * gm * bm * n.mu)
        return Result([out], [g2 / var])
    return rule


def average(c: Ctx, n: float, over_features: bool, s: Optional[Stat] = None) -> Stat:
    """The mean of n entries: over features the shared part is mu², over positions it is k."""
    s = s or c.ins[0]
    shared = s.mu * s.mu if over_features else s.k
    return Stat(shared + (s.q - shared) / max(n, 1.0), s.mu, s.k + (s.q - s.k) / max(n, 1.0) if not over_features
                else s.k)


def maximum(s: Stat, n: int) -> Stat:
    """The max of n entries (independent beyond their shared mean)."""
    sd = math.sqrt(max(s.q - s.mu * s.mu, 0.0))
    e1, e2 = expected_max(n)
    mu = s.mu + sd * e1
    q = s.mu * s.mu + 2 * s.mu * sd * e1 + sd * sd * e2
    return Stat(q, mu, mu * mu)


def softmax_stats(s: Stat, n: float) -> Stat:
    """softmax over n entries whose logits have variance v: weights ≈ e^z / (n E[e^z]), so
    E[p²] = e^v / n² (at most 1/n)."""
    v = max(s.q - s.mu * s.mu, 0.0)
    q = min(math.exp(min(v, 700.0)) / (n * n), 1.0 / n)
    return Stat(q, 1.0 / n, 1.0 / (n * n))


def mixing(v: Stat, n_keys: float, logit_var: float, causal: bool, n_queries: float) -> tuple[Stat, float]:
    """Attention as a mixing average of the values: out = Σ_j p_j v_j with Σ_j p_j² ≈ e^{logit var}/n
    (capped at 1); causal queries at position t average t keys. Two queries share Σ_j p_ij·p_i'j ≈ 1/n of
    their keys' private parts (2/T on average for causal ones, 1/max(t, t')). Returns the stats and Σ p²
    (chi of v)."""
    e = math.exp(min(logit_var, 700.0))
    if causal:
        t = int(max(1, min(n_queries, 100_000)))
        s2 = sum(min(1.0, e / i) for i in range(1, t + 1)) / t
        share = min(1.0, 2.0 / t)
    else:
        s2 = min(1.0, e / max(n_keys, 1.0))
        share = 1.0 / max(n_keys, 1.0)
    return Stat(v.k + (v.q - v.k) * s2, v.mu, v.k + (v.q - v.k) * share), s2


def same(c: Ctx) -> Result:
    """Layout and shape-preserving ops: entries move, their statistics stay."""
    return Result([c.ins[0] for _ in c.out_shapes], [1.0])


def arith(name: str):
    """+, -, *, / of two tensors (independent beyond their means: a residual branch ends in a layer
    with zero-mean weights) or of a tensor and a number."""
    def rule(c: Ctx) -> Result:
        sc = c.a.get("scalar")
        if sc is not None:
            x = c.ins[0]
            if x is None or isinstance(sc, bool):
                return Result([None], [None])
            sc = float(sc)
            if name in ("add", "sub"):
                sign = -1.0 if name == "sub" and not c.a.get("reverse") else 1.0
                if name == "sub" and c.a.get("reverse"):
                    x = Stat(x.q, -x.mu, x.k)
                    sign = 1.0
                t = sign * sc
                return Result([Stat(x.q + 2 * t * x.mu + t * t, x.mu + t, x.k + 2 * t * x.mu + t * t)], [1.0])
            if name == "mul":
                return Result([x.scaled(sc)], [sc * sc])
            if name == "div" and not c.a.get("reverse") and sc != 0:
                return Result([x.scaled(1.0 / sc)], [1.0 / (sc * sc)])
            return Result([None], [None])
        if len(c.ins) != 2 or None in c.ins:
            return Result([None], [None, None])
        a, b = c.ins
        if name in ("add", "sub"):
            sg = 1.0 if name == "add" else -1.0
            return Result([Stat(a.q + b.q + 2 * sg * a.mu * b.mu, a.mu + sg * b.mu, a.k + b.k + 2 * sg * a.mu * b.mu)],
                          [1.0, 1.0])
        if name == "mul":
            return Result([Stat(a.q * b.q, a.mu * b.mu, a.k * b.k)], [b.q, a.q])
        return Result([None], [None, None])
    return rule


def dropout(c: Ctx) -> Result:
    """Inverted dropout in training: kept entries are scaled by 1/(1-p), so q grows by 1/(1-p)."""
    x = c.ins[0]
    p = float(c.a.get("p") or 0.0)
    if x is None or p >= 1:
        return Result([None], [None])
    f = 1.0 / (1.0 - p)
    return Result([Stat(x.q * f, x.mu, x.k)], [f])


def softmax(c: Ctx) -> Result:
    x = c.ins[0]
    if x is None:
        return Result([None], [None])
    n = c.in_shapes[0][c.a["axis"]]
    return Result([softmax_stats(x, n)], [None])


def log_softmax(c: Ctx) -> Result:
    """x − logsumexp(x): the logsumexp of n entries of variance v is ≈ mu + log n + v/2."""
    x = c.ins[0]
    if x is None:
        return Result([None], [None])
    n = c.in_shapes[0][c.a["axis"]]
    v = max(x.q - x.mu * x.mu, 0.0)
    m = -(math.log(max(n, 1.0)) + v / 2)
    return Result([Stat(v + m * m, m, m * m)], [1.0])


def attention(c: Ctx) -> Result:
    """softmax(q·kᵀ·scale)·v as a mixing average of the values (see `mixing`); the logits' variance is
    scale²·d·E[q²]·E[k²]."""
    qs, ks, vs = (c.ins + [None, None, None])[:3]
    if None in (qs, ks, vs):
        return Result([None], [None, None, None])
    d = c.in_shapes[0][-1]
    scale = c.a.get("scale")
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    logit_var = scale * scale * d * qs.q * ks.q
    p = float(c.a.get("dropout") or 0.0)
    out, s2 = mixing(vs, c.in_shapes[1][-2], logit_var, bool(c.a.get("causal")), c.in_shapes[0][-2])
    if 0 < p < 1:
        out = Stat(out.k + (out.q - out.k) / (1 - p), out.mu, out.k)
        s2 /= 1 - p
    return Result([out], [None, None, s2])


def pool(kind: str, nd: int = 2):
    """A pooling window of n positions: an average over tokens, or the max of n entries."""
    def rule(c: Ctx) -> Result:
        x = c.ins[0]
        if x is None:
            return Result([None], [None])
        if kind == "adaptive":
            n = math.prod(c.in_shapes[0][-nd:]) / max(math.prod(c.out_shapes[0][-nd:]), 1)
        else:
            k = c.a.get("kernel")
            n = float(math.prod(k)) if isinstance(k, (list, tuple)) else float(k) ** nd
        if kind == "max":
            return Result([maximum(x, max(int(round(n)), 1))], [None])
        return Result([average(c, n, over_features=False)], [None])
    return rule


def reduce(name: str):
    def rule(c: Ctx) -> Result:
        x = c.ins[0]
        if x is None:
            return Result([None], [None])
        shape = c.in_shapes[0]
        axes = c.a.get("axes")
        axes = list(range(len(shape))) if not axes else [a % max(len(shape), 1) for a in axes]
        feats = [a for a in axes if c.feature(0, a)]
        toks = [a for a in axes if a not in feats]
        s = x
        nf = float(math.prod(shape[a] for a in feats)) if feats else 1.0
        nt = float(math.prod(shape[a] for a in toks)) if toks else 1.0
        if name == "max":
            return Result([maximum(s, max(int(min(nf * nt, 1e9)), 1))], [None])
        if feats:
            s = average(c, nf, True, s)
        if toks:
            s = average(c, nt, False, s)
        if name == "sum":
            s = s.scaled(nf * nt)
        return Result([s], [None])
    return rule


def concat(c: Ctx) -> Result:
    """Entries of the pieces side by side: their stats averaged by size along the axis."""
    if None in c.ins or not c.ins:
        return Result([None], [None] * len(c.ins))
    ax = c.a["axis"]
    sizes = [sh[ax] for sh in c.in_shapes]
    tot = sum(sizes) or 1.0
    q = sum(s.q * n for s, n in zip(c.ins, sizes)) / tot
    mu = sum(s.mu * n for s, n in zip(c.ins, sizes)) / tot
    k = sum(s.k * n for s, n in zip(c.ins, sizes)) / tot
    return Result([Stat(q, mu, k)], [1.0] * len(c.ins))


def contraction(c: Ctx) -> Result:
    """einsum / matmul of two tensors: Σ over K terms of a·b. Terms are uncorrelated along a feature
    axis (beyond the means) and share k along a token axis; a weight operand has independent entries."""
    if len(c.ins) != 2 or None in c.ins:
        return Result([None] * len(c.out_shapes), [None] * len(c.ins))
    a, b = c.ins
    groups = c.node.recipe.sig.contracted if c.node.recipe is not None else ()
    K = 1.0
    shared_a = shared_b = 0.0
    tok = False
    for g in groups:
        r = g[0]
        K *= c.in_shapes[r.arg][r.axis]
        tok = tok or not c.feature(r.arg, r.axis)
    wa, wb = c.weighted_in(0), c.weighted_in(1)
    shared_a = a.mu * a.mu if (wa or not tok) else a.k
    shared_b = b.mu * b.mu if (wb or not tok) else b.k
    q = K * a.q * b.q + K * (K - 1) * shared_a * shared_b
    mu = K * a.mu * b.mu
    k = K * a.k * b.k + K * (K - 1) * shared_a * shared_b
    return Result([Stat(q, mu, min(k, q))], [None, None])


def mix(c: Ctx) -> Result:
    """where(cond, x, y): entries from either side, half and half."""
    xs = [s for s in c.ins[1:] if s is not None]
    if len(xs) != 2:
        return Result([None], [None] * len(c.ins))
    x, y = xs
    return Result([Stat((x.q + y.q) / 2, (x.mu + y.mu) / 2, (x.k + y.k) / 2)], [None, 0.5, 0.5])
