"""Sparse and structured weights: what a spec may declare about how a weight is stored.

One record per rule: its arguments (positional order, defaults, types), the layers it fits and a
`plan` that turns the bound arguments and the weight's dense shape into a `Plan`: the tensors the
module stores for it, how many entries may be non-zero, the FLOPs of one forward and the CPU path the
module takes. The front end needs nothing else (no torch here); the module side is
nndsl/sparsity/runtime.py, the projections nndsl/sparsity/project.py, the Triton kernels
nndsl/kernels/. docs/sparsity.md gives every rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..init import REQUIRED  # noqa: E402  (one sentinel for every rule table)

# Block-sparse layers at or below this density store only their blocks and run a row-grouped batched
# matmul on the CPU; above it they keep a dense weight with zeros (the dense matmul wins there; CPU
# calibration in docs/sparsity.md).
BLOCK_CROSSOVER = 0.3
MAX_NM = 64              # the largest group of `nm(n, m)` (GPUs accelerate 2:4; 16 is already unusual)


@dataclass(frozen=True)
class Weight:
    """What a rule knows of the weight it structures: the op, the dense shape [out, in, *window] and the
    conv groups."""

    op: str
    shape: tuple[int, ...]
    groups: int = 1
    conv: bool = False

    @property
    def out(self) -> int:
        return self.shape[0]

    @property
    def cin(self) -> int:
        """Input features per group (the weight's second axis)."""
        return self.shape[1]

    @property
    def window(self) -> int:
        return math.prod(self.shape[2:])

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Stored:
    name: str                       # attribute of the layer (`weight`, `weight_mask`, `weight_l`, ...)
    shape: tuple[int, ...]
    kind: str = "param"             # "param" or "buffer"
    dtype: str = "float32"


@dataclass(frozen=True)
class Plan:
    kind: str                       # masked, nm, block, monarch, lowrank
    rule: str
    args: dict
    stored: tuple[Stored, ...]      # what the layer holds for this weight
    nonzero: int                    # entries of the dense weight that may be non-zero
    density: float                  # nonzero / dense entries
    kernel: str                     # the CPU path (`dense`, `dense+mask`, `monarch-bmm`, `bsr-rows`, `lowrank`)
    gpu: str                        # the path on a CUDA GPU (compute capability >= 8.0) with Triton
    fan_factor: float = 1.0         # the fraction of fan-in an init rule sees (masks: the density)
    # the fraction of a weight's energy E[w²] its mask keeps at init, for normal and for uniform entries:
    # the density for masks drawn at random; more for masks that keep the largest entries (magnitude, nm)
    energy: tuple[float, float] = (1.0, 1.0)
    paths: int = 1                  # products of stored entries summed into one dense entry (factor init)
    note: str = ""                  # what the summary says of speed


@dataclass(frozen=True)
class Rule:
    name: str
    args: tuple[tuple[str, Any], ...]
    plan: Callable[[dict, Weight], "Plan | str"]    # a Plan, or a message: why it does not fit
    types: dict[str, str] = field(default_factory=dict)    # arg -> int | number | str (default number)
    linear_only: bool = False
    doc: str = ""


class Misfit(Exception):
    """A rule that cannot structure a weight; `code` is E0702 (does not fit) or E0703 (kills the signal)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _density(d: float, what: str = "density") -> float:
    if not 0.0 <= d <= 1.0:
        raise Misfit("E0702", f"`{what}` must be in (0, 1], got {d:g}")
    if d == 0.0:
        raise Misfit("E0703", f"`{what}` 0 prunes every weight: the layer's output would not depend on its input")
    return float(d)


def _keep(d: float, n: int) -> int:
    """Entries kept out of n at density d: at least one."""
    k = int(round(d * n))
    if k == 0:
        raise Misfit("E0703", f"density {d:g} keeps none of the {n:,} entries: the layer's output would not "
                     "depend on its input")
    return min(k, n)


def _mask_plan(rule: str, args: dict, w: Weight, d: float, kind: str = "masked", note: str = "") -> Plan:
    k = _keep(d, w.numel)
    dens = k / w.numel
    if rule == "magnitude":
        energy = magnitude_energy(dens)
    elif rule == "nm":
        energy = nm_energy(args["n"], args["m"])
    else:
        energy = (dens, dens)
    return Plan(kind=kind, rule=rule, args=args,
                stored=(Stored("weight", w.shape), Stored("weight_mask", w.shape, "buffer")),
                nonzero=k, density=dens, kernel="dense+mask", gpu="dense+mask",
                fan_factor=dens, energy=energy,
                note=note or "a mask saves no time: the dense matmul runs with zeros kept")


def magnitude_energy(d: float) -> tuple[float, float]:
    """E[w² ; |w| among the largest fraction d] / E[w²] for normal entries (d + 2 t φ(t), t the
    two-sided 1 - d quantile) and for uniform ones (1 - (1 - d)³)."""
    from statistics import NormalDist

    if d >= 1.0:
        return 1.0, 1.0
    t = NormalDist().inv_cdf(1.0 - d / 2.0)
    phi = math.exp(-t * t / 2.0) / math.sqrt(2.0 * math.pi)
    return min(1.0, d + 2.0 * t * phi), 1.0 - (1.0 - d) ** 3


def nm_energy(n: int, m: int) -> tuple[float, float]:
    """The energy the n largest magnitudes of m iid entries keep: the order statistics of |w|, for normal
    entries by quadrature of the half-normal, for uniform ones in closed form (E[U_(k)²] = k(k+1)/((m+1)(m+2)))."""
    uniform = 3.0 * sum(k * (k + 1) for k in range(m - n + 1, m + 1)) / (m * (m + 1) * (m + 2))
    steps, top = 4000, 9.0
    h = top / steps
    total = 0.0
    for k in range(m - n + 1, m + 1):
        c = math.comb(m, k) * k              # m! / ((k-1)! (m-k)!)
        acc = 0.0
        for i in range(steps + 1):
            x = i * h
            f = 2.0 * math.exp(-x * x / 2.0) / math.sqrt(2.0 * math.pi)
            cdf = math.erf(x / math.sqrt(2.0))
            v = x * x * c * cdf ** (k - 1) * (1.0 - cdf) ** (m - k) * f
            acc += v * (0.5 if i in (0, steps) else 1.0)
        total += acc * h
    return min(1.0, total / m), min(1.0, uniform)


def _random(a, w):
    return _mask_plan("random", a, w, _density(a["density"]))


def _magnitude(a, w):
    return _mask_plan("magnitude", a, w, _density(a["density"]))


def _erk(a, w):
    # the per-layer density is solved over every weight the declaration covers (erk_densities); a
    # single weight gets the global one
    return _mask_plan("erk", a, w, _density(a.get("layer_density", a["density"])))


def _mask_file(a, w):
    d = a.get("file_density")
    if d is None:            # the sparsity pass reads the file; without it the mask is a placeholder
        d = 1.0
    return _mask_plan("mask", a, w, _density(d, "the mask's density"))


def _nm(a, w):
    n, m = a["n"], a["m"]
    if not (1 <= n < m):
        raise Misfit("E0702", f"nm({n}, {m}) needs 1 <= n < m")
    if m > MAX_NM:                       # checked before the order-statistics quadrature (n terms)
        raise Misfit("E0702", f"nm(_, {m}): groups of more than {MAX_NM} inputs are not N:M sparsity "
                     "(use random or magnitude)")
    if w.cin % m:
        raise Misfit("E0702", f"nm(_, {m}) groups the input dimension by {m}, but it has {w.cin} entries "
                     f"({w.cin} % {m} = {w.cin % m})")
    plan = _mask_plan("nm", a, w, n / m, kind="nm",
                      note="2:4 runs as semi-structured sparse on sm80+ GPUs for inference; training and the CPU "
                      "run dense with zeros kept")
    return Plan(**{**plan.__dict__, "gpu": "2:4 semi-structured (inference)" if (n, m) == (2, 4) else "dense+mask"})


def _block(a, w):
    b = a["size"]
    if b < 1:
        raise Misfit("E0702", f"block size must be positive, got {b}")
    out, cin = w.out, w.cin
    if out % b or cin % b:
        bad = [f"{nm} {v} % {b} = {v % b}" for nm, v in (("out", out), ("in", cin)) if v % b]
        raise Misfit("E0702", f"{b}x{b} blocks do not divide the {out}x{cin} weight ({', '.join(bad)})")
    rows, cols = out // b, cin // b
    total = rows * cols
    if a.get("layout") is not None:
        nnz = a.get("layout_blocks")
        if nnz is None:
            nnz = total
    else:
        if a["density"] is None:
            raise Misfit("E0702", "block(size, density) needs a density or a layout file")
        d = _density(a["density"])
        nnz = int(round(d * total))
        if nnz == 0:
            raise Misfit("E0703", f"density {d:g} keeps none of the {total} blocks of {b}x{b}: the layer's output "
                         "would not depend on its input")
    d = nnz / total
    if d > BLOCK_CROSSOVER:
        plan = _mask_plan("block", a, w, d, kind="block",
                          note=f"density {d:.2g} > {BLOCK_CROSSOVER}: the dense matmul with zeros kept is faster")
        return Plan(**{**plan.__dict__, "nonzero": nnz * b * b, "density": d, "fan_factor": d,
                       "energy": (d, d), "gpu": "dense+mask"})
    return Plan(kind="block", rule="block", args=a,
                stored=(Stored("weight_blocks", (nnz, b, b)), Stored("weight_index", (nnz, 2), "buffer", "int64")),
                nonzero=nnz * b * b, density=d, kernel="bsr-rows", gpu="triton bsr", fan_factor=d,
                energy=(d, d),
                note="block rows batched into one matmul")


def monarch_shapes(n_in: int, n_out: int, k: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The two block-diagonal factors of a Monarch matrix n_in -> n_out with k blocks: R (k, q, p) acts
    first on the input in k blocks of p, L (k, s, q) second, as in Dao et al. (2022)."""
    p, s = n_in // k, n_out // k
    q = p if n_in < n_out else s
    return (k, q, p), (k, s, q)


def _monarch(a, w):
    k = a["blocks"]
    n_out, n_in = w.out, w.cin
    if k < 1:
        raise Misfit("E0702", f"`blocks` must be positive, got {k}")
    if n_in % k or n_out % k:
        bad = [f"{nm} {v} % {k} = {v % k}" for nm, v in (("in", n_in), ("out", n_out)) if v % k]
        raise Misfit("E0702", f"{k} blocks do not divide the {n_out}x{n_in} weight ({', '.join(bad)})")
    r, l = monarch_shapes(n_in, n_out, k)
    q = r[1]
    if q % k:
        fit = [c for c in range(k - 1, 0, -1) if _monarch_fits(n_in, n_out, c)]
        raise Misfit("E0702", f"{k} blocks do not fit a Monarch factorisation of {n_out}x{n_in}: the inner block "
                     f"size {q} must be a multiple of the number of blocks {k}"
                     + (f" (the largest count below {k} that fits is {fit[0]})" if fit else ""))
    return Plan(kind="monarch", rule="monarch", args=a,
                stored=(Stored("weight_r", r), Stored("weight_l", l)),
                nonzero=w.numel, density=1.0, kernel="monarch-bmm", gpu="triton blockdiag", paths=q // k,
                note="two batched block-diagonal matmuls")


def _monarch_fits(n_in: int, n_out: int, k: int) -> bool:
    if n_in % k or n_out % k:
        return False
    return monarch_shapes(n_in, n_out, k)[0][1] % k == 0


def _lowrank(a, w):
    r = a["rank"]
    if r < 1:
        raise Misfit("E0702", f"`rank` must be positive, got {r}")
    if w.groups != 1:
        raise Misfit("E0702", f"lowrank factors a conv with groups=1 only (this one has groups={w.groups})")
    n_in = w.cin * w.window
    if r >= min(w.out, n_in) or r * (w.out + n_in) >= w.numel:
        raise Misfit("E0702", f"rank {r} stores {r * (w.out + n_in):,} weights, no fewer than the dense "
                     f"{w.out}x{n_in} ({w.numel:,}): use a rank below {w.out * n_in // (w.out + n_in)}")
    v_shape = (r, w.cin, *w.shape[2:])
    u_shape = (w.out, r) + (1,) * len(w.shape[2:])
    return Plan(kind="lowrank", rule="lowrank", args=a,
                stored=(Stored("weight_v", v_shape), Stored("weight_u", u_shape)),
                nonzero=w.numel, density=1.0, kernel="lowrank", gpu="lowrank",
                paths=r, note="two matmuls through the rank")


def _symmetric(a, w):
    if w.out != w.cin:
        raise Misfit("E0702", f"a symmetric weight is square: this one is {w.out}x{w.cin}")
    n = w.out
    packed = n * (n + 1) // 2
    return Plan(kind="symmetric", rule="symmetric", args=a, stored=(Stored("weight_packed", (packed,)),),
                nonzero=w.numel, density=1.0, kernel="dense (W = Wᵀ)", gpu="dense (W = Wᵀ)", note="W = Wᵀ by construction: the upper triangle is stored")


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("random", (("density", REQUIRED),), _random,
         doc="a uniformly random mask keeping `density` of the entries, drawn from the build seed and the weight's name"),
    Rule("erk", (("density", REQUIRED),), _erk,
         doc="Erdős–Rényi-kernel: random masks whose per-layer densities scale with (sum of dims)/(product of "
             "dims), solved so that the weights the declaration covers keep `density` of their entries together"),
    Rule("magnitude", (("density", REQUIRED),), _magnitude,
         doc="keeps the `density` largest-magnitude entries of the initialised weight"),
    Rule("mask", (("file", REQUIRED),), _mask_file, types={"file": "str"},
         doc="a mask read from a `.npy` file next to the spec (a lottery ticket: with the same build seed the "
             "kept weights rewind to their initial values)"),
    Rule("nm", (("n", 2), ("m", 4)), _nm, types={"n": "int", "m": "int"},
         doc="at most n non-zeros in every m consecutive inputs (2:4), the largest-magnitude ones at init"),
    Rule("block", (("size", REQUIRED), ("density", None), ("layout", None)), _block,
         types={"size": "int", "density": "number?", "layout": "str?"}, linear_only=True,
         doc="`size`x`size` blocks, a random `density` of them or the grid of a `.npy` layout file"),
    Rule("monarch", (("blocks", REQUIRED),), _monarch, types={"blocks": "int"}, linear_only=True,
         doc="M = P L P^T R with L and R block-diagonal in `blocks` blocks (Dao et al. 2022)"),
    Rule("symmetric", (), _symmetric, linear_only=True,
         doc="W = Wᵀ (a Hopfield-style or energy-based layer): the upper triangle is stored, n(n+1)/2 weights"),
    Rule("lowrank", (("rank", REQUIRED),), _lowrank, types={"rank": "int"},
         doc="W = U V with V: in -> rank and U: rank -> out (a conv: a `rank`-channel conv, then a 1x1 conv)"),
)}
FROZEN = "frozen"        # `frozen` / `frozen(rule)`: not trained


def plan(rule: str, args: dict, w: Weight) -> Plan:
    """The plan of `rule` for weight `w`; raises Misfit."""
    r = RULES[rule]
    if r.linear_only and w.conv:
        raise Misfit("E0702", f"`{rule}` structures linear layers; a {w.op} weight can be masked (random, erk, "
                     "magnitude, mask, nm) or factored (lowrank)")
    got = r.plan(args, w)
    return got


def erk_raw(shape: tuple[int, ...]) -> float:
    """The Erdős–Rényi-kernel score of a weight: (sum of its dims) / (product of its dims)."""
    return sum(shape) / math.prod(shape)


def erk_densities(shapes: list[tuple[int, ...]], density: float) -> list[float]:
    """Per-layer densities proportional to `erk_raw`, capped at 1, keeping `density` of all the entries
    (Evci et al. 2020, RigL): layers that would exceed 1 are made dense and the rest rescaled."""
    sizes = [math.prod(s) for s in shapes]
    raw = [erk_raw(s) for s in shapes]
    dense: set[int] = set()
    budget = density * sum(sizes)
    while True:
        rest = budget - sum(sizes[i] for i in dense)
        denom = sum(raw[i] * sizes[i] for i in range(len(shapes)) if i not in dense)
        if denom <= 0:
            return [1.0 if i in dense else 0.0 for i in range(len(shapes))]
        eps = rest / denom
        over = [i for i in range(len(shapes)) if i not in dense and eps * raw[i] > 1.0]
        if not over:
            return [1.0 if i in dense else max(eps * raw[i], 0.0) for i in range(len(shapes))]
        dense.update(over)


def factor_std(std: float, paths: int) -> float:
    """The std of each of two independent zero-mean factors whose products, `paths` of them summed per
    entry, have the variance std²: paths · s⁴ = std²."""
    return (std * std / max(paths, 1)) ** 0.25


def describe_rule(rule: str, args: dict) -> str:
    """`random(density=0.1)` as the summary prints it (erk with the layer's own density)."""
    shown = {k: v for k, v in args.items() if v is not None and not k.startswith(("layer_", "file_", "layout_"))}
    if "layer_density" in args:
        shown["layer"] = round(float(args["layer_density"]), 4)
    text = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                     for k, v in shown.items())
    return f"{rule}({text})" if text else rule

