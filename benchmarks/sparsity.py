"""Sparse and structured layers on the CPU against the dense layer, timed in the same run.

A step is forward + backward (`y = layer(x); y.backward(gy)`, x requiring grad) at batch 256 on a
4096x4096 layer, fp32. Each repetition times one dense `nn.Linear` step and one structured step (paired,
order alternating); the ratio reported is dense/structured, the median of the per-pair ratios. Every layer
is checked against its dense weight first. Targets (issue 9): Monarch 64 blocks >= 10x, 16 blocks >= 6x;
block-sparse 64x64 >= 5x at density 0.1, >= 1.3x at 0.25 and no more than 5% slower than dense at 0.5;
low rank 256 >= 7x; masks: no speed claim on the CPU.

    python benchmarks/sparsity.py [--threads 1,2] [--repeat 7] [--size 4096] [--batch 256]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("NNDSL_KERNELS", "torch")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from nndsl.sparsity import BLOCK_CROSSOVER  # noqa: E402
from nndsl.sparsity import runtime as R  # noqa: E402
from nndsl.sparsity.project import dense_weight  # noqa: E402
from common import paired  # noqa: E402

TARGETS = {"monarch k=64": 10.0, "monarch k=16": 6.0, "block 64 d=0.1": 5.0, "block 64 d=0.25": 1.3,
           "block 64 d=0.5": 0.95, "lowrank r=256": 7.0}


def layers(n: int) -> dict:
    torch.manual_seed(0)

    def block(d):
        nnz = round(d * (n // 64) ** 2)
        if d <= BLOCK_CROSSOVER:
            return R.BlockSparseLinear(n, n, size=64, nnz=nnz)
        return R.MaskedLinear(n, n, sparsity=("block", {"size": 64, "blocks": nnz, "keep": nnz * 64 * 64}))

    return {
        "monarch k=64": R.MonarchLinear(n, n, blocks=64),
        "monarch k=16": R.MonarchLinear(n, n, blocks=16),
        "block 64 d=0.1": block(0.1),
        "block 64 d=0.25": block(0.25),
        "block 64 d=0.5": block(0.5),
        "lowrank r=256": R.LowRankLinear(n, n, rank=256),
        "mask random d=0.1": R.MaskedLinear(n, n, sparsity=("random", {"keep": n * n // 10})),
    }


def step(layer, x, gy):
    def run():
        x.grad = None
        for p in layer.parameters():
            p.grad = None
        layer(x).backward(gy)
    return run


def check(layer, x) -> float:
    with torch.no_grad():
        w = dense_weight(layer)
        ref = x @ w.t() + (layer.bias if layer.bias is not None else 0)
        return float((layer(x) - ref).abs().max() / ref.abs().max())


def main(threads=(1, 2), repeat: int = 7, n: int = 4096, batch: int = 256, only: str = "") -> dict:
    dense = nn.Linear(n, n)
    cands = {k: v for k, v in layers(n).items() if only in k}
    x = torch.randn(batch, n, requires_grad=True)
    gy = torch.randn(batch, n)
    print(f"sparse and structured layers vs dense nn.Linear, {n}x{n}, batch {batch}, fwd+bwd, fp32, "
          f"CPU (ratio = dense time / layer time, median of {repeat} pairs)")
    for name, layer in cands.items():
        err = check(layer, x.detach())
        assert err < 1e-4, (name, err)
    out = {}
    for th in threads:
        torch.set_num_threads(th)
        print(f"  {th} thread{'s' if th > 1 else ''}:")
        for name, layer in cands.items():
            ratio, td, tc = paired(step(dense, x, gy), step(layer, x, gy), repeat)
            stored = sum(p.numel() for nm, p in layer.named_parameters() if nm != "bias")
            tgt = TARGETS.get(name)
            mark = "" if tgt is None else f"   (target >= {tgt:g}x: {'met' if ratio >= tgt else 'NOT met'})"
            print(f"    {name:18s} {ratio:6.2f}x   dense {td * 1e3:7.1f} ms, layer {tc * 1e3:7.1f} ms, "
                  f"stores {n * n / stored:6.1f}x fewer weights{mark}")
            out[(th, name)] = ratio
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--only", default="", help="run the layers whose name contains this")
    a = ap.parse_args()
    main(tuple(int(t) for t in a.threads.split(",")), a.repeat, a.size, a.batch, a.only)
