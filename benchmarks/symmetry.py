"""The equivariant-layer solver and layers (issue 10). Targets: the basis of matrix->matrix S_8 maps and
of D4 regular->regular 3x3 group convolutions under 1 s each; an equivariant layer within 1.5x of an
unconstrained layer of the same shape (nn.Linear; nn.Conv2d for group convolutions), forward + backward,
timed in the same run.

    python benchmarks/symmetry.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from nndsl.symmetry import _basis, gconv_rep, permutation, symmetric  # noqa: E402
from nndsl.symmetry.layers import EquivariantLinear  # noqa: E402
from common import paired  # noqa: E402


def solve_time(rep_out, rep_in) -> tuple[float, int]:
    _basis.cache_clear()
    t = time.perf_counter()
    b = _basis(rep_out, rep_in)
    return time.perf_counter() - t, b.shape[0]


def fwd_bwd_ratio(a, xa, b, xb) -> float:
    """Paired median of t(a: forward + backward on xa) / t(b: the same on xb)."""
    def step(m, x):
        def run():
            m.zero_grad()
            m(x).sum().backward()
        return run

    return paired(step(a, xa), step(b, xb), repeat=15, warmup=3)[0]


def main() -> dict:
    print("equivariant layers: solver and layers (CPU)")
    S8 = symmetric(8)
    P = permutation(S8)
    out = {}
    for name, (ro, ri) in {"S8 matrix->matrix": (P ** 2, P ** 2),
                           "D4 regular->regular 3x3": gconv_rep("D4", 3, "regular")[::-1],
                           "C4 lifting 3x3": gconv_rep("C4", 3, "lifting")[::-1]}.items():
        t, m = solve_time(ro, ri)
        out[name] = t
        print(f"  basis {name:26s} {m:3d} maps in {t * 1e3:7.1f} ms   (target < 1000 ms)")
    torch.manual_seed(0)
    for name, rin, rout, c in (("S8 matrix->matrix", P ** 2, P ** 2, 32), ("S8 set->set", P, P, 256)):
        eq = EquivariantLinear(rin, rout, c, c)
        dense = nn.Linear(c * rin.dim, c * rout.dim)
        x = torch.randn(256, c, rin.dim, requires_grad=True)
        xf = x.detach().reshape(256, -1).requires_grad_(True)

        r = fwd_bwd_ratio(eq, x, dense, xf)
        out[name + " layer"] = r
        print(f"  layer {name:26s} {r:5.2f}x the time of nn.Linear({c * rin.dim}, {c * rout.dim}), fwd+bwd, "
              f"batch 256   (target <= 1.5x)")
    from nndsl.symmetry.runtime import GroupConv2d

    for group, regular in (("c4", True), ("d4", True), ("c4", False)):
        c = 16
        gc = GroupConv2d(c, c, 3, group=group, regular_in=regular, padding=1)
        g = gc.order
        cin = c * (g if regular else 1)
        plain = nn.Conv2d(cin, c * g, 3, padding=1)          # the same shape, every weight free
        x = torch.randn(32, c, *((g,) if regular else ()), 16, 16)
        xf = x.reshape(32, cin, 16, 16)

        r = fwd_bwd_ratio(gc, x, plain, xf)
        name = f"gconv2d {group} {'regular' if regular else 'lifting'}"
        out[name] = r
        print(f"  layer {name:26s} {r:5.2f}x the time of nn.Conv2d({cin}, {c * g}, 3), fwd+bwd, batch 32, 16x16   "
              "(target <= 1.5x)")
    return out


if __name__ == "__main__":
    main()
