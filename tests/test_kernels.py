"""The Triton kernels against the torch backend, in Triton's interpreter on CPU tensors (conftest sets
TRITON_INTERPRET=1 before anything imports them), and the dispatch between the two."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from nndsl.sparsity import runtime as R

triton = pytest.importorskip("triton")
from nndsl.kernels import triton_backend as K  # noqa: E402

T = K.BACKEND
TB = R._TorchBackend
TOL = {torch.float32: 1e-4, torch.float16: 2e-2, torch.float64: 1e-10}


def close(a, b, dtype):
    scale = max(1.0, float(b.abs().max()))
    return float((a.float() - b.float()).abs().max()) <= TOL[dtype] * scale


def monarch_factors(n_in, n_out, k, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    p, s = n_in // k, n_out // k
    q = p if n_in < n_out else s
    return (torch.randn(k, q, p, generator=g).to(dtype) / p ** 0.5, torch.randn(k, s, q, generator=g).to(dtype) / q ** 0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n,n_in,n_out,k", [(5, 32, 32, 2), (3, 16, 64, 2), (7, 64, 16, 2), (1, 24, 24, 2)])
def test_monarch_primitives_match_torch(dtype, n, n_in, n_out, k):
    r, l = monarch_factors(n_in, n_out, k, dtype)
    x = torch.randn(n, n_in).to(dtype)
    ref = TB.monarch_fwd(x.float(), r.float(), l.float())
    y, h = T.monarch_fwd(x, r, l)
    assert y.dtype == dtype and close(y, ref[0], dtype) and close(h, ref[1], dtype)
    gy = torch.randn(n, n_out).to(dtype)
    want = TB.monarch_bwd(gy.float(), x.float(), r.float(), l.float(), ref[1], True, True, True)
    got = T.monarch_bwd(gy, x, r, l, h, True, True, True)
    for a, b in zip(got, want):
        assert a.dtype == dtype and close(a, b, dtype)
    assert T.monarch_bwd(gy, x, r, l, h, False, True, False)[0::2] == (None, None)


def test_monarch_takes_non_contiguous_inputs():
    r, l = monarch_factors(32, 32, 2, torch.float32)
    x = torch.randn(32, 6)[:, 1:].t()                     # (5, 32), strided
    assert not x.is_contiguous()
    assert close(T.monarch_fwd(x, r, l)[0], TB.monarch_fwd(x.contiguous(), r, l)[0], torch.float32)


def block_layer(n_in, n_out, size, nnz, seed=0, index=None):
    torch.manual_seed(seed)
    m = R.BlockSparseLinear(n_in, n_out, size=size, nnz=nnz)
    if index is not None:
        grid = torch.zeros(n_out // size, n_in // size, dtype=torch.bool)
        grid[index[:, 0], index[:, 1]] = True
        m.reset_structure(mask=grid)
    return m


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", ["random", "empty_rows_and_cols", "dense", "odd_batch"])
def test_bsr_primitives_match_torch(dtype, case):
    if case == "empty_rows_and_cols":                  # block row 1 and block column 0 hold nothing
        m = block_layer(48, 64, 16, 3, index=torch.tensor([[0, 1], [2, 2], [3, 1]]))
    elif case == "dense":
        m = block_layer(32, 32, 16, 4)
    else:
        m = block_layer(64, 48, 16, 5)
    n = 33 if case == "odd_batch" else 9
    with torch.no_grad():
        m.weight_blocks.copy_(m.weight_blocks.to(dtype).float())      # the blocks as the dtype holds them
    blocks = m.weight_blocks.detach().to(dtype)
    x = torch.randn(n, m.in_features).to(dtype)
    gy = torch.randn(n, m.out_features).to(dtype)
    dense = m.dense_weight().detach()
    assert close(T.bsr_fwd(x, blocks, m._plan), x.float() @ dense.t(), dtype)
    assert close(TB.bsr_fwd(x.float(), blocks.float(), m._plan), x.float() @ dense.t(), torch.float32)
    assert close(T.bsr_fwd(gy, blocks, m._plan, trans=True), gy.float() @ dense, dtype)
    assert close(TB.bsr_fwd(gy.float(), blocks.float(), m._plan, trans=True), gy.float() @ dense, torch.float32)
    want = TB.bsr_wgrad(gy.float(), x.float(), m._plan, 16)
    assert close(T.bsr_wgrad(gy, x, m._plan, 16), want, dtype)
    full = gy.float().t() @ x.float()                       # the dense gradient, read at the blocks
    idx = m.weight_index
    for t in range(idx.shape[0]):
        r, c = idx[t].tolist()
        assert close(want[t], full[r * 16:(r + 1) * 16, c * 16:(c + 1) * 16], torch.float32)


@pytest.mark.parametrize("act", ["identity", "relu", "gelu", "silu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_linear_act_matches_torch(act, dtype):
    x = torch.randn(7, 20).to(dtype)
    w = torch.randn(24, 20).to(dtype) / 5
    b = torch.randn(24).to(dtype)
    y, pre = T.linear_act_fwd(x, w, b, act, True)
    ry, rpre = TB.linear_act_fwd(x.float(), w.float(), b.float(), act, True)
    assert close(y, ry, dtype) and close(pre, rpre, dtype)
    y2, none = T.linear_act_fwd(x, w, None, act, False)
    assert none is None and close(y2, TB.linear_act_fwd(x.float(), w.float(), None, act, False)[0], dtype)


def test_outputs_are_written_only_where_they_belong():
    """Canaries around the outputs: an unmasked store would overwrite them (the interpreter does not
    catch out-of-bounds stores)."""
    m = block_layer(48, 64, 16, 3, index=torch.tensor([[0, 1], [2, 2], [3, 1]]))
    n = 5
    x = torch.randn(n, 48)
    big = torch.full((n + 3, 64 + 16), float("nan"))
    y = big[:n, :64]
    plan = m._plan
    K._bsr_mm[(1, 4)](x, m.weight_blocks.detach(), plan.cols, plan.slots, y, n, plan.cols.shape[1], 3, x.stride(0),
                      y.stride(0), TRANS=False, IEEE=True, ACC=triton.language.float32, BN=16, BS=16)
    assert torch.isnan(big[:n, 64:]).all() and torch.isnan(big[n:]).all()
    assert torch.allclose(y, x @ m.dense_weight().detach().t(), atol=1e-5)     # empty rows written as zeros
    r, l = monarch_factors(32, 32, 2, torch.float32)
    big = torch.full((n + 2, 40), float("nan"))
    h = torch.empty(2, n, 16)
    xm = torch.randn(n, 32)
    T._mm(xm, r, h, n, 16, 16, 2, (32, 16, 1, 0, 0), (256, 16, 1), (0, 0, 0, n * 16, 16), perm_out=True)
    out = big[:n, :32]
    T._mm(h, l, out, n, 16, 16, 2, (16, n * 16, 1, 0, 0), (256, 16, 1), (40, 1, 2, 0, 0))
    assert torch.isnan(big[:n, 32:]).all() and torch.isnan(big[n:]).all()
    assert torch.allclose(out, TB.monarch_fwd(xm, r, l)[0], atol=1e-5)


def test_kernels_are_deterministic():
    r, l = monarch_factors(32, 32, 2, torch.float32)
    x = torch.randn(9, 32)
    gy = torch.randn(9, 32)
    y1, h1 = T.monarch_fwd(x, r, l)
    y2, h2 = T.monarch_fwd(x, r, l)
    assert torch.equal(y1, y2)
    a = T.monarch_bwd(gy, x, r, l, h1, True, True, True)
    b = T.monarch_bwd(gy, x, r, l, h2, True, True, True)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    m = block_layer(64, 48, 16, 5)
    gy2 = torch.randn(9, 48, generator=torch.Generator().manual_seed(1))
    xb = torch.randn(9, 64)
    assert torch.equal(T.bsr_wgrad(gy2, xb, m._plan, 16), T.bsr_wgrad(gy2, xb, m._plan, 16))
    assert torch.equal(T.bsr_fwd(xb, m.weight_blocks.detach(), m._plan), T.bsr_fwd(xb, m.weight_blocks.detach(), m._plan))


def test_tiles_are_powers_of_two_of_at_least_16():
    for n in (1, 7, 16, 17, 100, 5000):
        for lo, hi in ((16, 64), (16, 32)):
            t = K._tile(n, lo, hi)
            assert t >= 16 and t & (t - 1) == 0 and t <= hi
    assert T.bsr_ok(16) and T.bsr_ok(64) and not T.bsr_ok(8) and not T.bsr_ok(48)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_functions_pass_gradcheck(backend, monkeypatch):
    monkeypatch.setenv("NNDSL_KERNELS", backend)
    torch.manual_seed(0)                      # relu's kink: inputs fixed away from it
    dt = torch.float64
    r, l = monarch_factors(16, 32, 2, dt)
    x = torch.randn(3, 16, dtype=dt)
    for t in (x, r, l):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, c: R.monarch(a, b, c), (x, r, l), fast_mode=True)
    m = block_layer(32, 32, 16, 3).double()
    blocks = m.weight_blocks.detach().clone().requires_grad_(True)
    xb = torch.randn(3, 32, dtype=dt, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: R.block_sparse(a, b, m._plan), (xb, blocks), fast_mode=True)
    w = torch.randn(6, 16, dtype=dt, requires_grad=True)
    bias = torch.randn(6, dtype=dt, requires_grad=True)
    for act in ("relu", "gelu", "silu"):
        assert torch.autograd.gradcheck(lambda a, b, c: R.linear_act(a, b, c, act), (x, w, bias), fast_mode=True)
    mask = (torch.rand(6, 16) < 0.5).to(dt)
    g = torch.autograd.grad(R._MaskGrad.apply(w, mask).sum() * 1.0, w)[0]
    assert torch.equal(g, mask)


def test_layers_give_the_same_results_on_both_backends(monkeypatch):
    torch.manual_seed(0)
    layers = [R.MonarchLinear(32, 64, blocks=2), R.BlockSparseLinear(64, 32, size=16, nnz=3)]
    x = torch.randn(5, 32)
    for layer in layers:
        xin = x if layer.in_features == 32 else torch.randn(5, 64)
        outs, grads = [], []
        for be in ("torch", "triton"):
            monkeypatch.setenv("NNDSL_KERNELS", be)
            layer.zero_grad()
            y = layer(xin)
            y.pow(2).sum().backward()
            outs.append(y.detach())
            grads.append([p.grad.clone() for p in layer.parameters()])
        assert torch.allclose(outs[0], outs[1], atol=1e-4)
        assert all(torch.allclose(a, b, atol=1e-3) for a, b in zip(*grads))


# -- dispatch --------------------------------------------------------------------------------------
def test_dispatch_in_process(monkeypatch):
    x = torch.randn(2, 4)
    monkeypatch.setenv("NNDSL_KERNELS", "torch")
    assert R.backend_for(x, "monarch") is TB
    monkeypatch.setenv("NNDSL_KERNELS", "auto")
    assert R.backend_for(x, "monarch") is T                 # the interpreter is on
    assert R.backend_for(x, "bsr", size=8) is TB            # blocks the kernels do not take
    monkeypatch.setenv("NNDSL_KERNELS", "triton")
    with pytest.raises(RuntimeError, match="no kernel for bsr"):
        R.backend_for(x, "bsr", size=8)
    monkeypatch.setenv("NNDSL_KERNELS", "fast")
    with pytest.raises(ValueError, match="auto, torch or triton"):
        R.backend_for(x)


_DISPATCH = r'''
import os, sys, warnings
if sys.argv[1] == "missing":
    sys.modules["triton"] = None                 # triton not installed
import torch
import nndsl
from nndsl.sparsity import runtime as R
assert "triton" not in sys.modules or sys.modules["triton"] is None     # importing nndsl imports no triton
x = torch.randn(3, 32)
m = R.MonarchLinear(32, 32, blocks=2)
os.environ["NNDSL_KERNELS"] = "auto"
m(x).sum().backward()                           # silently the torch path
assert R.backend_for(x, "monarch") is R._TorchBackend
os.environ["NNDSL_KERNELS"] = "triton"
try:
    m(x)
except RuntimeError as e:
    print("raised:", e)
else:
    print("ran")
'''


@pytest.mark.parametrize("case", ["installed", "missing"])
def test_dispatch_without_a_gpu_is_silent_and_forcing_says_why(case):
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "NNDSL_KERNELS")}
    r = subprocess.run([sys.executable, "-W", "error", "-c", _DISPATCH, case], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "raised: NNDSL_KERNELS=triton, but Triton cannot run here" in r.stdout
    if case == "missing":
        assert "unavailable" in r.stdout
    else:
        assert "Triton runs on CUDA GPUs" in r.stdout
