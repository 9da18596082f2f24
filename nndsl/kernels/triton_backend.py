"""Triton kernels behind the sparse and structured layers, with the same primitives as the torch
backend in nndsl/sparsity/runtime.py (`_TorchBackend`):

- `_bd_mm`: a batched block-diagonal matmul Y(n, b, j) = sum_i X(n, b, i) W(b, j, i) whose loads and
  stores follow index maps, so the Monarch permutation P^T costs no transpose pass; Monarch runs it twice
  forward and twice for the input gradient.
- `_bd_wgrad`: G(b, j, i) = sum_n A(n, b, j) B(n, b, i), one program per (block, tile) looping over the
  batch (deterministic: no atomics); the weight gradients of both Monarch factors.
- `_bsr_mm`: y = x W^T for a block-sparse W, one program per (batch tile, block row) looping over that
  row's blocks; with TRANS it computes the input gradient from the transposed metadata, reading the same
  block values transposed (nothing gathered).
- `_bsr_wgrad`: the gradient of each stored block, one program per block.
- `_linear_act`: y = act(x W^T + b) with the activation on the fp32 accumulator; its pre-activation is
  saved for the backward, whose matmuls go to cuBLAS.

Importing this module imports triton; nndsl imports it only on first use (NNDSL_KERNELS, a CUDA tensor or
TRITON_INTERPRET=1).
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


@triton.jit
def _x_offsets(n, b, i, NB, s_n, s_b, s_i, s_perm_l, s_perm_n, I, PERM: tl.constexpr):
    """Address of X(n, b, i): affine, or through the Monarch permutation: the entry (n, b, i) of the
    stage-1 output lives at [f % NB, n, f // NB] of the permuted tensor, f = b * I + i."""
    if PERM:
        f = b * I + i
        return (f % NB) * s_perm_l + n * s_perm_n + f // NB
    else:
        return n * s_n + b * s_b + i * s_i


@triton.jit
def _bd_mm(X, W, Y, N, I, J, NB,
           sxn, sxb, sxi, sxl, sxpn,
           swb, swj, swi,
           syn, syb, syj, syl, sypn,
           PERM_IN: tl.constexpr, PERM_OUT: tl.constexpr, IEEE: tl.constexpr, ACC: tl.constexpr,
           BN: tl.constexpr, BJ: tl.constexpr, BI: tl.constexpr):
    pn = tl.program_id(0)
    pj = tl.program_id(1)
    b = tl.program_id(2)
    rn = pn * BN + tl.arange(0, BN)
    rj = pj * BJ + tl.arange(0, BJ)
    acc = tl.zeros((BN, BJ), dtype=ACC)
    for i0 in range(0, I, BI):
        ri = i0 + tl.arange(0, BI)
        xa = _x_offsets(rn[:, None], b, ri[None, :], NB, sxn, sxb, sxi, sxl, sxpn, I, PERM_IN)
        x = tl.load(X + xa, mask=(rn[:, None] < N) & (ri[None, :] < I), other=0.0)
        w = tl.load(W + b * swb + rj[None, :] * swj + ri[:, None] * swi,
                    mask=(ri[:, None] < I) & (rj[None, :] < J), other=0.0)
        if IEEE:
            acc += tl.dot(x, w, input_precision="ieee")
        else:
            acc += tl.dot(x, w)
    ya = _x_offsets(rn[:, None], b, rj[None, :], NB, syn, syb, syj, syl, sypn, J, PERM_OUT)
    tl.store(Y + ya, acc.to(Y.dtype.element_ty), mask=(rn[:, None] < N) & (rj[None, :] < J))


@triton.jit
def _bd_wgrad(A, B, G, N, J, I, NB,
              san, sab, saj, sal, sapn,
              sbn, sbb, sbi, sbl, sbpn,
              PERM_A: tl.constexpr, IEEE: tl.constexpr, ACC: tl.constexpr,
              BJ: tl.constexpr, BI: tl.constexpr, BN: tl.constexpr):
    pj = tl.program_id(0)
    pi = tl.program_id(1)
    b = tl.program_id(2)
    rj = pj * BJ + tl.arange(0, BJ)
    ri = pi * BI + tl.arange(0, BI)
    acc = tl.zeros((BJ, BI), dtype=ACC)
    for n0 in range(0, N, BN):
        rn = n0 + tl.arange(0, BN)
        aa = _x_offsets(rn[None, :], b, rj[:, None], NB, san, sab, saj, sal, sapn, J, PERM_A)
        a = tl.load(A + aa, mask=(rn[None, :] < N) & (rj[:, None] < J), other=0.0)
        x = tl.load(B + rn[:, None] * sbn + b * sbb + ri[None, :] * sbi,
                    mask=(rn[:, None] < N) & (ri[None, :] < I), other=0.0)
        if IEEE:
            acc += tl.dot(a, x, input_precision="ieee")
        else:
            acc += tl.dot(a, x)
    tl.store(G + b * J * I + rj[:, None] * I + ri[None, :], acc.to(G.dtype.element_ty),
             mask=(rj[:, None] < J) & (ri[None, :] < I))


@triton.jit
def _bsr_mm(X, BLK, COLS, SLOTS, Y, N, WIDTH, NNZ, sxn, syn,
            TRANS: tl.constexpr, IEEE: tl.constexpr, ACC: tl.constexpr, BN: tl.constexpr, BS: tl.constexpr):
    pn = tl.program_id(0)
    r = tl.program_id(1)
    rn = pn * BN + tl.arange(0, BN)
    rb = tl.arange(0, BS)
    acc = tl.zeros((BN, BS), dtype=ACC)
    for t in range(0, WIDTH):
        slot = tl.load(SLOTS + r * WIDTH + t)
        col = tl.load(COLS + r * WIDTH + t)
        ok = (rb * 0 + slot) < NNZ        # padding (slot NNZ) loads zeros; a vector: the interpreter
        x = tl.load(X + rn[:, None] * sxn + col * BS + rb[None, :],  # takes no scalar masks
                    mask=(rn[:, None] < N) & ok[None, :], other=0.0)
        # the block's (out i, in j) entry; y needs sum_j x_j W[i, j]: load it as (j, i)
        wm = ok[:, None] & ok[None, :]
        if TRANS:
            w = tl.load(BLK + slot * BS * BS + rb[:, None] * BS + rb[None, :], mask=wm, other=0.0)
        else:
            w = tl.load(BLK + slot * BS * BS + rb[None, :] * BS + rb[:, None], mask=wm, other=0.0)
        if IEEE:
            acc += tl.dot(x, w, input_precision="ieee")
        else:
            acc += tl.dot(x, w)
    tl.store(Y + rn[:, None] * syn + r * BS + rb[None, :], acc.to(Y.dtype.element_ty),
             mask=(rn[:, None] < N) & (rb[None, :] < BS))


@triton.jit
def _bsr_wgrad(GY, X, INDEX, G, N, sgn, sxn,
               IEEE: tl.constexpr, ACC: tl.constexpr, BN: tl.constexpr, BS: tl.constexpr):
    t = tl.program_id(0)
    r = tl.load(INDEX + 2 * t)
    c = tl.load(INDEX + 2 * t + 1)
    rb = tl.arange(0, BS)
    acc = tl.zeros((BS, BS), dtype=ACC)
    for n0 in range(0, N, BN):
        rn = n0 + tl.arange(0, BN)
        gy = tl.load(GY + rn[None, :] * sgn + r * BS + rb[:, None], mask=(rn[None, :] < N) & (rb[:, None] < BS),
                     other=0.0)
        x = tl.load(X + rn[:, None] * sxn + c * BS + rb[None, :], mask=(rn[:, None] < N) & (rb[None, :] < BS),
                    other=0.0)
        if IEEE:
            acc += tl.dot(gy, x, input_precision="ieee")
        else:
            acc += tl.dot(gy, x)
    tl.store(G + t * BS * BS + rb[:, None] * BS + rb[None, :], acc.to(G.dtype.element_ty))


@triton.jit
def _linear_act(X, W, BIAS, Y, PRE, M, N, K, sxm, swn, sym,
                HAS_BIAS: tl.constexpr, ACT: tl.constexpr, SAVE: tl.constexpr, IEEE: tl.constexpr, ACC: tl.constexpr,
                BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pm = tl.program_id(0)
    pn = tl.program_id(1)
    rm = pm * BM + tl.arange(0, BM)
    rn = pn * BN + tl.arange(0, BN)
    acc = tl.zeros((BM, BN), dtype=ACC)
    for k0 in range(0, K, BK):
        rk = k0 + tl.arange(0, BK)
        x = tl.load(X + rm[:, None] * sxm + rk[None, :], mask=(rm[:, None] < M) & (rk[None, :] < K), other=0.0)
        w = tl.load(W + rn[None, :] * swn + rk[:, None], mask=(rn[None, :] < N) & (rk[:, None] < K), other=0.0)
        if IEEE:
            acc += tl.dot(x, w, input_precision="ieee")
        else:
            acc += tl.dot(x, w)
    if HAS_BIAS:
        acc += tl.load(BIAS + rn, mask=rn < N, other=0.0).to(ACC)[None, :]
    out_mask = (rm[:, None] < M) & (rn[None, :] < N)
    if SAVE:
        tl.store(PRE + rm[:, None] * sym + rn[None, :], acc.to(PRE.dtype.element_ty), mask=out_mask)
    if ACT == "relu":
        acc = tl.maximum(acc, 0.0)
    elif ACT == "gelu":
        acc = 0.5 * acc * (1.0 + tl.erf(acc * 0.7071067811865476))
    elif ACT == "silu":
        acc = acc / (1.0 + tl.exp(-acc))
    tl.store(Y + rm[:, None] * sym + rn[None, :], acc.to(Y.dtype.element_ty), mask=out_mask)


def _ieee(t: torch.Tensor) -> bool:
    """fp32 matmuls exactly as torch's (no TF32) unless torch allows TF32 itself."""
    return t.dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32


def _acc(t: torch.Tensor):
    """The accumulator: fp32, or fp64 for fp64 inputs."""
    return tl.float64 if t.dtype == torch.float64 else tl.float32


def _tile(n: int, lo: int = 16, hi: int = 64) -> int:
    """A power-of-2 tile for an axis of n (at least 16: the smallest tl.dot on NVIDIA GPUs)."""
    t = lo
    while t < n and t < hi:
        t *= 2
    return t


class TritonBackend:
    name = "triton"
    ACTS = ("identity", "relu", "gelu", "silu")

    @staticmethod
    def cannot_run(x=None) -> str:
        """Why the kernels cannot run on tensor x ("" when they can)."""
        if _interpreting():
            return ""
        if x is not None and not x.is_cuda:
            return f"the tensor is on {x.device.type}, Triton runs on CUDA GPUs"
        if not torch.cuda.is_available():
            return "no CUDA device"
        dev = x.device if x is not None else torch.device("cuda")
        cc = torch.cuda.get_device_capability(dev)
        if cc < (8, 0):
            return f"compute capability {cc[0]}.{cc[1]} is below 8.0"
        try:
            triton.runtime.driver.active.get_current_device()
        except Exception as e:  # noqa: BLE001 - no driver, however it fails
            return f"no active Triton driver ({type(e).__name__})"
        return ""

    @staticmethod
    def supports(op: str, x, size=None) -> bool:
        if op == "bsr" and not TritonBackend.bsr_ok(size):
            return False
        if x.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            return False
        if x.dtype == torch.bfloat16 and _interpreting():
            return False                      # the interpreter has no bf16 arithmetic
        return True

    # -- Monarch ----------------------------------------------------------------------------------
    @staticmethod
    def _mm(x, w, y, n, i_size, j_size, nb, xs, ws, ys, perm_in=False, perm_out=False):
        bn, bj, bi = _tile(n), _tile(j_size), _tile(i_size, 16, 32)
        grid = (triton.cdiv(n, bn), triton.cdiv(j_size, bj), nb)
        _bd_mm[grid](x, w, y, n, i_size, j_size, nb, *xs, *ws, *ys, PERM_IN=perm_in, PERM_OUT=perm_out,
                     IEEE=_ieee(x), ACC=_acc(x), BN=bn, BJ=bj, BI=bi)

    @staticmethod
    def _wgrad(a, b, g, n, j_size, i_size, nb, as_, bs, perm_a=False):
        bj, bi, bn = _tile(j_size), _tile(i_size), _tile(n, 16, 32)
        grid = (triton.cdiv(j_size, bj), triton.cdiv(i_size, bi), nb)
        _bd_wgrad[grid](a, b, g, n, j_size, i_size, nb, *as_, *bs, PERM_A=perm_a, IEEE=_ieee(a), ACC=_acc(a),
                        BJ=bj, BI=bi, BN=bn)

    @classmethod
    def monarch_fwd(cls, x, r, l, bias=None):
        n, (k, q, p), s = x.shape[0], r.shape, l.shape[1]
        x, r, l = x.contiguous(), r.contiguous(), l.contiguous()
        h = torch.empty(k, n, q, dtype=x.dtype, device=x.device)
        y = torch.empty(n, k * s, dtype=x.dtype, device=x.device)
        # stage 1: h(n, b, j) = sum_i x[n, b*p + i] R[b, j, i], stored permuted: [f % k, n, f // k]
        cls._mm(x, r, h, n, p, q, k, (k * p, p, 1, 0, 0), (q * p, p, 1), (0, 0, 0, n * q, q), perm_out=True)
        # stage 2: y[n, j*k + b] = sum_i h[b, n, i] L[b, j, i]
        cls._mm(h, l, y, n, q, s, k, (q, n * q, 1, 0, 0), (s * q, q, 1), (k * s, 1, k, 0, 0))
        if bias is not None:
            y += bias
        return y, h

    @classmethod
    def monarch_bwd(cls, gy, x, r, l, h, need_x, need_r, need_l):
        n, (k, q, p), s = x.shape[0], r.shape, l.shape[1]
        gy = gy.contiguous()
        gl = gr = gx = None
        gys = (k * s, 1, k, 0, 0)            # gy(n, b, j) = gy[n, j*k + b]
        if need_l:
            gl = torch.empty_like(l)
            cls._wgrad(gy, h, gl, n, s, q, k, gys, (q, n * q, 1, 0, 0))
        gh = torch.empty(k, n, q, dtype=x.dtype, device=x.device)
        # gh(n, b, r) = sum_j gy(n, b, j) L[b, j, r]: W(b, j=r, i=j') read transposed through strides
        cls._mm(gy, l, gh, n, s, q, k, gys, (s * q, 1, q), (q, n * q, 1, 0, 0))
        ghs = (0, 0, 0, n * q, q)            # stage-1 space (n, b, i) through the permutation
        if need_r:
            gr = torch.empty_like(r)
            cls._wgrad(gh, x, gr, n, q, p, k, ghs, (k * p, p, 1, 0, 0), perm_a=True)
        if need_x:
            gx = torch.empty(n, k * p, dtype=x.dtype, device=x.device)
            cls._mm(gh, r, gx, n, q, p, k, ghs, (q * p, 1, p), (k * p, p, 1, 0, 0), perm_in=True)
        return gx, gr, gl

    # -- block-sparse -----------------------------------------------------------------------------
    @staticmethod
    def bsr_ok(size) -> bool:
        """Blocks the kernels take: a power of 2, at least 16 (tl.arange and tl.dot)."""
        return isinstance(size, int) and size >= 16 and size & (size - 1) == 0

    @staticmethod
    def bsr_fwd(x, blocks, plan, trans=False):
        cols, slots = (plan.cols_t, plan.slots_t) if trans else (plan.cols, plan.slots)
        n = x.shape[0]
        rows, width = cols.shape
        bs = blocks.shape[-1]
        x, blocks = x.contiguous(), blocks.contiguous()
        y = torch.empty(n, rows * bs, dtype=x.dtype, device=x.device)
        bn = _tile(n, 16, 64)
        _bsr_mm[(triton.cdiv(n, bn), rows)](x, blocks, cols.contiguous(), slots.contiguous(), y, n, width,
                                            blocks.shape[0], x.stride(0), y.stride(0), TRANS=trans,
                                            IEEE=_ieee(x), ACC=_acc(x), BN=bn, BS=bs)
        return y

    @staticmethod
    def bsr_wgrad(gy, x, plan, bs):
        index = plan.index
        n = x.shape[0]
        gy, x = gy.contiguous(), x.contiguous()
        g = torch.empty(index.shape[0], bs, bs, dtype=x.dtype, device=x.device)
        if index.shape[0]:
            _bsr_wgrad[(index.shape[0],)](gy, x, index.contiguous(), g, n, gy.stride(0), x.stride(0),
                                          IEEE=_ieee(x), ACC=_acc(x), BN=_tile(n, 16, 32), BS=bs)
        return g

    # -- fused linear + bias + activation -------------------------------------------------------------
    @staticmethod
    def linear_act_fwd(x, w, b, act, save):
        m, k = x.shape
        n = w.shape[0]
        x, w = x.contiguous(), w.contiguous()
        y = torch.empty(m, n, dtype=x.dtype, device=x.device)
        pre = torch.empty_like(y) if save else y
        bm, bn, bk = _tile(m), _tile(n), _tile(k, 16, 32)
        _linear_act[(triton.cdiv(m, bm), triton.cdiv(n, bn))](
            x, w, b if b is not None else x, y, pre, m, n, k, x.stride(0), w.stride(0), y.stride(0),
            HAS_BIAS=b is not None, ACT=act, SAVE=save, IEEE=_ieee(x), ACC=_acc(x), BM=bm, BN=bn, BK=bk)
        return y, (pre if save else None)


BACKEND = TritonBackend
