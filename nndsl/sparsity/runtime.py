# Sparse and structured layers (PyTorch). This module is self-contained on purpose: `nndsl compile`
# copies it into the generated source of a model that declares sparsity, so that source runs with torch
# alone. Each op is one autograd.Function over a backend object: the torch backend below on the CPU (or
# wherever Triton cannot run), nndsl's Triton kernels on a CUDA GPU when they are installed
# (NNDSL_KERNELS=auto|torch|triton). Gradients come back in storage layout: blocks and factors, never a
# dense weight.
import importlib
import math
import os

import torch
import torch.nn.functional as F
from torch import nn


class _TorchBackend:
    """The reference primitives, and the CPU path."""

    name = "torch"

    @staticmethod
    def monarch_fwd(x, r, l, bias=None):
        """y = P L P^T R x (+ bias) for x (N, k*p), R (k, q, p), L (k, s, q); returns y (N, k*s) and the
        stage-1 output, permuted (k, N, q), for the backward."""
        n, (k, q, p), s = x.shape[0], r.shape, l.shape[1]
        xk = x.view(n, k, p).transpose(0, 1)
        if torch.compiler.is_compiling():               # dynamo takes no strided `out=`
            h = torch.bmm(xk, r.transpose(1, 2)).transpose(0, 1).reshape(n, q, k)
        else:                                           # stage 1 written as (N, k, q): P^T is one copy
            h = x.new_empty(n, k * q)
            torch.bmm(xk, r.transpose(1, 2), out=h.view(n, k, q).transpose(0, 1))
            h = h.view(n, q, k)
        h = h.permute(2, 0, 1).contiguous()                                            # P^T: (k, N, q)
        if bias is None:
            y = torch.bmm(h, l.transpose(1, 2))                                       # (k, N, s)
        else:                                                                         # y[n, j*k + b] + bias
            y = torch.baddbmm(bias.view(s, k).t().unsqueeze(1), h, l.transpose(1, 2))
        out = x.new_empty(n, s * k)                  # owns its storage: not a view (in-place ops may follow)
        out.view(n * s, k).copy_(y.view(k, n * s).t())  # (k, N*s) -> (N*s, k): a 2-D transpose
        return out, h

    @staticmethod
    def monarch_bwd(gy, x, r, l, h, need_x, need_r, need_l):
        """Gradients of x, R and L (each when asked): four batched matmuls; the input gradient is written
        through a strided view straight into its layout (a strided `out=` is slow for the permuted one)."""
        n, (k, q, p), s = x.shape[0], r.shape, l.shape[1]
        g2 = gy.view(n, s, k).permute(2, 0, 1).contiguous()                           # (k, N, s)
        gl = torch.bmm(g2.transpose(1, 2), h) if need_l else None                      # (k, s, q)
        gh = torch.bmm(g2, l).permute(1, 2, 0).reshape(n, k, q).transpose(0, 1)     # back through P^T
        gr = torch.bmm(gh.transpose(1, 2), x.view(n, k, p).transpose(0, 1)) if need_r else None   # (k, q, p)
        gx = None
        if need_x and torch.compiler.is_compiling():    # dynamo takes no strided `out=`
            gx = torch.bmm(gh, r).transpose(0, 1).reshape(n, k * p)
        elif need_x:
            gxb = x.new_empty(n, k, p)
            torch.bmm(gh, r, out=gxb.transpose(0, 1))                                   # straight into (N, k*p)
            gx = gxb.view(n, k * p)
        return gx, gr, gl

    @staticmethod
    def bsr_fwd(x, blocks, plan, trans=False):
        """y = x W^T for W block-sparse (`plan`: BsrPlan); with `trans`, y = x W (the input gradient): the
        transposed metadata with each block read transposed. Works on x^T split into block rows (each a
        contiguous b x N slab, gathered by a plain copy); block rows with equally many blocks form one
        batched matmul, so nothing is padded."""
        n = x.shape[0]
        b = blocks.shape[-1]
        buckets = plan.t_buckets if trans else plan.buckets
        xt = x.t().contiguous().view(-1, b, n)                                           # (in/b, b, N)
        yt = x.new_zeros(plan.n_cols if trans else plan.n_rows, b, n)
        for rows, cols, slots in buckets:
            nr, c = cols.shape
            xg = xt.index_select(0, cols.flatten()).view(nr, c * b, n)                    # (nr, c*b, N)
            wg = blocks.index_select(0, slots.flatten()).view(nr, c, b, b)
            wg = (wg.permute(0, 3, 1, 2) if trans else wg.transpose(1, 2)).reshape(nr, b, c * b)
            yt.index_copy_(0, rows, torch.bmm(wg, xg))
        return yt.view(-1, n).t().contiguous()        # owns its storage: not a view (in-place ops may follow)

    @staticmethod
    def bsr_wgrad(gy, x, plan, b):
        """The gradient of each stored block: its block row of gy against its block column of x."""
        n = x.shape[0]
        g = x.new_zeros(plan.nnz, b, b)
        xt = x.t().contiguous().view(-1, b, n)
        gyt = gy.t().contiguous().view(-1, b, n)
        for rows, cols, slots in plan.buckets:
            nr, c = cols.shape
            gr = gyt.index_select(0, rows)                                               # (nr, b, N)
            xg = xt.index_select(0, cols.flatten()).view(nr, c * b, n)                    # (nr, c*b, N)
            gw = torch.bmm(gr, xg.transpose(1, 2)).view(nr, b, c, b).transpose(1, 2)
            g.index_copy_(0, slots.flatten(), gw.reshape(nr * c, b, b))
        return g

    @staticmethod
    def linear_act_fwd(x, w, b, act, save):
        pre = F.linear(x, w, b)
        return _ACTS[act](pre), (pre if save else None)


_ACTS = {"identity": lambda t: t, "relu": F.relu, "gelu": F.gelu, "silu": F.silu}


def _act_grad(act, pre, gy):
    if act == "identity":
        return gy
    if act == "relu":
        return gy * (pre > 0)
    if act == "silu":
        sg = torch.sigmoid(pre)
        return gy * (sg * (1 + pre * (1 - sg)))
    if act == "gelu":
        cdf = 0.5 * (1 + torch.erf(pre * 0.7071067811865476))
        pdf = torch.exp(-0.5 * pre * pre) * 0.3989422804014327
        return gy * (cdf + pre * pdf)
    raise ValueError(act)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


_TRITON = []          # [module] once imported, [None] when it cannot be


def _triton_backend():
    if not _TRITON:
        try:
            _TRITON.append(importlib.import_module("nndsl.kernels.triton_backend").BACKEND)
        except Exception as e:       # not installed, no triton, no driver: the torch path
            _TRITON.append(None)
            _TRITON.append(f"{type(e).__name__}: {e}")
    return _TRITON[0]


def triton_reason(x=None) -> str:
    """Why Triton cannot run for tensor `x` ("" when it can)."""
    be = _triton_backend()
    if be is None:
        return "nndsl's Triton kernels are unavailable (" + (_TRITON[1] if len(_TRITON) > 1 else "not installed") + ")"
    return be.cannot_run(x)


def backend_for(x, op: str = "", **info):
    """The backend for an op on tensor `x`, from NNDSL_KERNELS (auto: Triton where it can run, else torch,
    silently; triton: Triton or an error saying why; torch: torch)."""
    mode = os.environ.get("NNDSL_KERNELS", "auto")
    if mode == "torch":
        return _TorchBackend
    if mode not in ("auto", "triton"):
        raise ValueError(f"NNDSL_KERNELS must be auto, torch or triton, not {mode!r}")
    if mode == "auto" and not (x.is_cuda or _interpreting()):
        return _TorchBackend
    why = triton_reason(x)
    if not why and (not op or _TRITON[0].supports(op, x, **info)):
        return _TRITON[0]
    if mode == "triton":
        raise RuntimeError(f"NNDSL_KERNELS=triton, but Triton cannot run here: {why or 'no kernel for ' + op}")
    return _TorchBackend


class _MaskGrad(torch.autograd.Function):
    """Identity on the weight; its gradient is masked, so no optimizer step moves a pruned entry."""

    @staticmethod
    def forward(ctx, w, mask):
        ctx.save_for_backward(mask)
        return w.view_as(w)

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        if g.dtype == mask.dtype and g.is_contiguous():
            # the only consumer is the layer's own matmul or conv (masked_weight), whose weight gradient is a
            # fresh tensor: masked in place (a new tensor would cost 6x more than the multiply)
            return g.mul_(mask), None
        return g * mask, None


class _Monarch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, r, l, bias):
        be = backend_for(x, "monarch")
        y, h = be.monarch_fwd(x, r, l, bias)
        ctx.save_for_backward(x, r, l, h)
        ctx.be, ctx.has_bias = be, bias is not None
        return y

    @staticmethod
    def backward(ctx, gy):
        x, r, l, h = ctx.saved_tensors
        nx, nr, nl, nb = ctx.needs_input_grad
        gy = gy.contiguous()
        gx, gr, gl = ctx.be.monarch_bwd(gy, x, r, l, h, nx, nr, nl)
        return gx, gr, gl, (gy.sum(0) if ctx.has_bias and nb else None)


class _BlockSparse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, blocks, plan):
        be = backend_for(x, "bsr", size=blocks.shape[-1])
        ctx.save_for_backward(x, blocks)
        ctx.be, ctx.plan = be, plan
        return be.bsr_fwd(x, blocks, plan)

    @staticmethod
    def backward(ctx, gy):
        x, blocks = ctx.saved_tensors
        gy = gy.contiguous()
        gx = ctx.be.bsr_fwd(gy, blocks, ctx.plan, trans=True) if ctx.needs_input_grad[0] else None
        gb = ctx.be.bsr_wgrad(gy, x, ctx.plan, blocks.shape[-1]) if ctx.needs_input_grad[1] else None
        return gx, gb, None


class BsrPlan:
    """The metadata of a block-sparse matrix with blocks at `index` ((block row, block column) per stored
    block): per block row its block columns and block numbers, padded to the fullest row (the Triton
    kernels), and grouped by count (the torch path); the same per block column for the transpose."""

    def __init__(self, index, n_rows, n_cols, nnz, device=None):
        idx = index.cpu()
        self.n_rows, self.n_cols, self.nnz, self.index = n_rows, n_cols, nnz, index.to(device)
        self.cols, self.slots = (t.to(device) for t in _padded(idx[:, 0], idx[:, 1], n_rows, n_cols, nnz))
        self.cols_t, self.slots_t = (t.to(device) for t in _padded(idx[:, 1], idx[:, 0], n_cols, n_rows, nnz))
        self.buckets = _buckets(idx[:, 0], idx[:, 1], n_rows, device)
        self.t_buckets = _buckets(idx[:, 1], idx[:, 0], n_cols, device)


class _LinearAct(torch.autograd.Function):
    """act(x W^T + b) in one kernel on the GPU; the pre-activation is kept for the backward."""

    @staticmethod
    def forward(ctx, x, w, b, act):
        be = backend_for(x, "linear_act")
        y, pre = be.linear_act_fwd(x, w, b, act, True)
        ctx.save_for_backward(x, w, pre)
        ctx.act, ctx.has_bias = act, b is not None
        return y

    @staticmethod
    def backward(ctx, gy):
        x, w, pre = ctx.saved_tensors
        g = _act_grad(ctx.act, pre, gy)
        gx = g @ w if ctx.needs_input_grad[0] else None
        gw = g.t() @ x if ctx.needs_input_grad[1] else None
        gb = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None


def linear_act(x, w, b=None, act="relu"):
    """act(x W^T + b) for act in identity, relu, gelu (erf), silu."""
    if act not in _ACTS:
        raise ValueError(f"activation must be one of {', '.join(_ACTS)}, not {act!r}")
    lead = x.shape[:-1]
    y = _LinearAct.apply(x.reshape(-1, x.shape[-1]), w, b, act)
    return y.reshape(*lead, w.shape[0])


def block_sparse(x, blocks, plan):
    """x (..., in) through the block-sparse matrix of `blocks` laid out by `plan` (a BsrPlan)."""
    lead = x.shape[:-1]
    y = _BlockSparse.apply(x.reshape(-1, x.shape[-1]).contiguous(), blocks, plan)
    return y.reshape(*lead, y.shape[-1])


def monarch(x, r, l, bias=None):
    """x (..., k*p) through the Monarch matrix with factors R (k, q, p) and L (k, s, q), plus `bias`."""
    lead = x.shape[:-1]
    y = _Monarch.apply(x.reshape(-1, x.shape[-1]).contiguous(), r, l, bias)
    return y.reshape(*lead, y.shape[-1])


def monarch_dense(r, l):
    """The dense (out, in) matrix of a Monarch layer: its factors applied to the identity."""
    n_in = r.shape[0] * r.shape[2]
    eye = torch.eye(n_in, dtype=r.dtype, device=r.device)
    return monarch(eye, r, l).t()


# -- masks ------------------------------------------------------------------------------------------
def make_mask(rule, args, w, generator=None):
    """The boolean mask of a rule for weight `w` (out, in, *window); `args["keep"]` entries are kept."""
    numel = w.numel()
    keep = int(args["keep"])
    dev = w.device
    if rule in ("random", "erk"):
        idx = torch.randperm(numel, generator=generator, device="cpu")[:keep].to(dev)
        m = torch.zeros(numel, dtype=torch.bool, device=dev)
        m[idx] = True
        return m.view_as(w)
    if rule == "magnitude":
        idx = torch.topk(w.detach().abs().flatten(), keep, sorted=False).indices
        m = torch.zeros(numel, dtype=torch.bool, device=dev)
        m[idx] = True
        return m.view_as(w)
    if rule == "nm":
        n, mm = int(args["n"]), int(args["m"])
        a = w.detach().abs().movedim(1, -1)                      # (out, *window, in): groups along the input
        g = a.reshape(-1, mm)
        top = torch.topk(g, n, dim=1).indices
        m = torch.zeros_like(g, dtype=torch.bool).scatter_(1, top, True)
        return m.view(a.shape).movedim(-1, 1).contiguous()
    if rule == "block":
        b = int(args["size"])
        rows, cols = w.shape[0] // b, w.shape[1] // b
        grid = block_grid(rows, cols, int(args["blocks"]), generator).to(dev)
        return grid.repeat_interleave(b, 0).repeat_interleave(b, 1)
    if rule == "mask":
        return torch.ones_like(w, dtype=torch.bool)             # set from the file by build(masks=...)
    raise ValueError(f"unknown mask rule {rule!r}")


def block_grid(rows, cols, nnz, generator=None):
    idx = torch.randperm(rows * cols, generator=generator)[:nnz]
    g = torch.zeros(rows * cols, dtype=torch.bool)
    g[idx] = True
    return g.view(rows, cols)


class _Masked:
    """A dense layer whose weight keeps the zeros of `weight_mask` through training."""

    def _setup_mask(self, sparsity):
        self.sparsity = (sparsity[0], dict(sparsity[1]))
        # 0/1 in the weight's dtype: masking the gradient in place costs 2% of a dense step (a bool mask: 15%)
        self.register_buffer("weight_mask", torch.ones_like(self.weight, requires_grad=False))
        self.reset_structure()

    def reset_parameters(self):
        super().reset_parameters()
        if "weight_mask" in self._buffers and not getattr(self, "_structure_deferred", False):
            self.reset_structure()

    @torch.no_grad()
    def reset_structure(self, generator=None, mask=None):
        """Draw the mask (or take `mask`) and zero the weight where it is False."""
        if self.weight.is_meta:             # no data: the mask comes with the state dict or a later reset
            return
        if mask is None:
            mask = make_mask(self.sparsity[0], self.sparsity[1], self.weight, generator)
        self.weight_mask.copy_(mask.to(torch.bool))
        self.weight.mul_(self.weight_mask)

    def masked_weight(self):
        return _MaskGrad.apply(self.weight, self.weight_mask)


class MaskedLinear(_Masked, nn.Linear):
    def __init__(self, in_features, out_features, bias=True, *, sparsity, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._setup_mask(sparsity)
        self._semi = None                # (weight version, compressed 2:4 weight), or False: not here

    def forward(self, x):
        if self._semi is not False and x.is_cuda and self._semi_structured_ok(x):
            w = self._semi_structured()
            if w is not None:
                lead = x.shape[:-1]
                return F.linear(x.reshape(-1, x.shape[-1]), w, self.bias).reshape(*lead, self.out_features)
        return F.linear(x, self.masked_weight(), self.bias)

    def _semi_structured_ok(self, x):
        """2:4 through PyTorch's semi-structured sparse tensors: on a GPU of compute capability 8.0 or
        more, fp16/bf16, for inference (training runs dense with the mask), unless NNDSL_KERNELS=torch."""
        if self.sparsity[0] != "nm" or (self.sparsity[1]["n"], self.sparsity[1]["m"]) != (2, 4):
            return False
        if os.environ.get("NNDSL_KERNELS", "auto") == "torch" or torch.compiler.is_compiling():
            return False
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return False
        if x.dtype not in (torch.float16, torch.bfloat16) or x.dtype != self.weight.dtype:
            return False
        if self.in_features % 64 or self.out_features % 64 or x.numel() // x.shape[-1] % 8:
            return False
        return torch.cuda.get_device_capability(x.device) >= (8, 0)

    def _semi_structured(self):
        key = (self.weight._version, self.weight.data_ptr())
        if self._semi is None or self._semi[0] != key:
            try:
                from torch.sparse import to_sparse_semi_structured

                self._semi = (key, to_sparse_semi_structured((self.weight * self.weight_mask).detach()))
            except Exception:  # noqa: BLE001 - no cuSPARSELt/CUTLASS kernel for this GPU or shape: dense
                self._semi = False
                return None
        return self._semi[1]


class _MaskedConv(_Masked):
    def __init__(self, *args, sparsity, **kw):
        super().__init__(*args, **kw)
        self._setup_mask(sparsity)

    def forward(self, x):
        return self._conv_forward(x, self.masked_weight(), self.bias)


class MaskedConv1d(_MaskedConv, nn.Conv1d):
    pass


class MaskedConv2d(_MaskedConv, nn.Conv2d):
    pass


class MaskedConv3d(_MaskedConv, nn.Conv3d):
    pass


def _uniform_(t, fan_in):
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    nn.init.uniform_(t, -bound, bound)


class MonarchLinear(nn.Module):
    """y = M x + b with M = P L P^T R, R and L block-diagonal in `blocks` blocks (stores weight_r, weight_l)."""

    def __init__(self, in_features, out_features, bias=True, *, blocks, device=None, dtype=None):
        super().__init__()
        k = blocks
        p, s = in_features // k, out_features // k
        q = p if in_features < out_features else s
        self.in_features, self.out_features, self.blocks = in_features, out_features, k
        kw = {"device": device, "dtype": dtype}
        self.weight_r = nn.Parameter(torch.empty(k, q, p, **kw))
        self.weight_l = nn.Parameter(torch.empty(k, s, q, **kw))
        self.bias = nn.Parameter(torch.empty(out_features, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        """Each block as PyTorch initialises a Linear layer of its size."""
        _uniform_(self.weight_r, self.weight_r.shape[2])
        _uniform_(self.weight_l, self.weight_l.shape[2])
        if self.bias is not None:
            _uniform_(self.bias, self.in_features)

    def forward(self, x):
        return monarch(x, self.weight_r, self.weight_l, self.bias)

    def dense_weight(self):
        return monarch_dense(self.weight_r, self.weight_l)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, blocks={self.blocks}"


class SymmetricLinear(nn.Module):
    """y = W x + b with W = Wᵀ by construction: the upper triangle is stored (weight_packed, n(n+1)/2) and
    the square weight read from it through a fixed index map, so its gradient sums both triangles."""

    def __init__(self, in_features, out_features, bias=True, *, device=None, dtype=None):
        super().__init__()
        if in_features != out_features:
            raise ValueError(f"a symmetric weight is square, not {out_features}x{in_features}")
        n = in_features
        kw = {"device": device, "dtype": dtype}
        self.in_features = self.out_features = n
        self.weight_packed = nn.Parameter(torch.empty(n * (n + 1) // 2, **kw))
        self.bias = nn.Parameter(torch.empty(n, **kw)) if bias else None
        i, j = torch.triu_indices(n, n)
        index = torch.empty(n, n, dtype=torch.long)
        index[i, j] = torch.arange(i.numel())
        index[j, i] = torch.arange(i.numel())
        self.register_buffer("weight_index", index.to(device), persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        _uniform_(self.weight_packed, self.in_features)
        if self.bias is not None:
            _uniform_(self.bias, self.in_features)

    def dense_weight(self):
        return self.weight_packed[self.weight_index]

    def forward(self, x):
        return F.linear(x, self.dense_weight(), self.bias)

    def extra_repr(self):
        return f"features={self.in_features}, symmetric"


class LowRankLinear(nn.Module):
    """y = U V x + b (stores weight_v: rank x in, weight_u: out x rank)."""

    def __init__(self, in_features, out_features, bias=True, *, rank, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.weight_v = nn.Parameter(torch.empty(rank, in_features, **kw))
        self.weight_u = nn.Parameter(torch.empty(out_features, rank, **kw))
        self.bias = nn.Parameter(torch.empty(out_features, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        _uniform_(self.weight_v, self.in_features)
        _uniform_(self.weight_u, self.rank)
        if self.bias is not None:
            _uniform_(self.bias, self.in_features)

    def forward(self, x):
        return F.linear(F.linear(x, self.weight_v), self.weight_u, self.bias)

    def dense_weight(self):
        return self.weight_u @ self.weight_v

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


class _LowRankConv(nn.Module):
    """A conv factored through `rank` channels: a conv in -> rank with the layer's kernel, stride, padding
    and dilation, then a 1x1 conv rank -> out with its bias (stores weight_v, weight_u)."""

    nd = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", *, rank, device=None, dtype=None):
        super().__init__()
        nd = self.nd
        tup = lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v,) * nd  # noqa: E731
        kw = {"device": device, "dtype": dtype}
        self.in_channels, self.out_channels, self.rank = in_channels, out_channels, rank
        self.kernel_size, self.stride, self.dilation = tup(kernel_size), tup(stride), tup(dilation)
        self.padding = padding if isinstance(padding, str) else tup(padding)
        self.padding_mode = padding_mode
        self.weight_v = nn.Parameter(torch.empty(rank, in_channels, *self.kernel_size, **kw))
        self.weight_u = nn.Parameter(torch.empty(out_channels, rank, *(1,) * nd, **kw))
        self.bias = nn.Parameter(torch.empty(out_channels, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        fan = self.in_channels * math.prod(self.kernel_size)
        _uniform_(self.weight_v, fan)
        _uniform_(self.weight_u, self.rank)
        if self.bias is not None:
            _uniform_(self.bias, fan)

    def forward(self, x):
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.nd - 1]
        if self.padding_mode != "zeros":
            pad = [p for k, d in zip(reversed(self.kernel_size), reversed(self.dilation))
                   for p in _same(k, d)] if self.padding == "same" else \
                [p for p in reversed(self.padding) for _ in range(2)]
            h = conv(F.pad(x, pad, mode=self.padding_mode), self.weight_v, None, self.stride, 0, self.dilation)
        else:
            h = conv(x, self.weight_v, None, self.stride, self.padding, self.dilation)
        return conv(h, self.weight_u, self.bias)

    def dense_weight(self):
        u = self.weight_u.reshape(self.out_channels, self.rank)
        return (u @ self.weight_v.reshape(self.rank, -1)).reshape(self.out_channels, self.in_channels,
                                                                   *self.kernel_size)


def _same(k, d):
    total = d * (k - 1)
    return (total // 2, total - total // 2)


class LowRankConv1d(_LowRankConv):
    nd = 1


class LowRankConv2d(_LowRankConv):
    nd = 2


class LowRankConv3d(_LowRankConv):
    nd = 3


class BlockSparseLinear(nn.Module):
    """y = W x + b with W made of `size` x `size` blocks, `nnz` of them stored (weight_blocks) at the
    (block-row, block-column) pairs of weight_index; the layout is drawn at init or loaded with the state
    dict. On the CPU one batched matmul over the block rows, padded to the fullest row."""

    def __init__(self, in_features, out_features, bias=True, *, size, nnz, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.in_features, self.out_features, self.size, self.nnz = in_features, out_features, size, nnz
        self.weight_blocks = nn.Parameter(torch.empty(nnz, size, size, **kw))
        self.bias = nn.Parameter(torch.empty(out_features, **kw)) if bias else None
        self.register_buffer("weight_index", torch.zeros(nnz, 2, dtype=torch.long, device=device))
        self.register_load_state_dict_post_hook(lambda m, _keys: m.plan())
        self.reset_parameters()

    def reset_parameters(self):
        _uniform_(self.weight_blocks, max(1, self.nnz * self.size ** 2 // self.out_features))  # mean fan-in
        if self.bias is not None:
            _uniform_(self.bias, self.in_features)
        self.reset_structure()

    @torch.no_grad()
    def reset_structure(self, generator=None, mask=None):
        """Draw a layout of nnz blocks (or take the block grid `mask`)."""
        if self.weight_blocks.is_meta:      # no data: the layout comes with the state dict or a later reset
            self._plan = None
            return
        rows, cols = self.out_features // self.size, self.in_features // self.size
        grid = block_grid(rows, cols, self.nnz, generator) if mask is None else mask.to(torch.bool).cpu()
        idx = grid.nonzero()
        if idx.shape[0] != self.nnz:
            raise ValueError(f"a layout of {idx.shape[0]} blocks for a layer of {self.nnz}")
        self.weight_index.copy_(idx)
        self.plan()

    @torch.no_grad()
    def plan(self):
        """The metadata the kernels read (BsrPlan), from weight_index: rebuilt when the layout changes,
        the state dict is loaded or the layer moves."""
        if self.weight_index.is_meta:
            self._plan = None
            return
        self._plan = BsrPlan(self.weight_index, self.out_features // self.size, self.in_features // self.size,
                             self.nnz, self.weight_blocks.device)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self.plan()
        return out

    def forward(self, x):
        y = block_sparse(x, self.weight_blocks, self._plan)
        return y + self.bias if self.bias is not None else y

    def dense_weight(self):
        b = self.size
        w = self.weight_blocks.new_zeros(self.out_features // b, self.in_features // b, b, b)
        w[self.weight_index[:, 0], self.weight_index[:, 1]] = self.weight_blocks
        return w.permute(0, 2, 1, 3).reshape(self.out_features, self.in_features)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, size={self.size}, nnz={self.nnz}"


def defer_structures(model):
    """Until apply_structures: masks are not redrawn when a layer resets its weights (build() draws them
    once, after every weight has its initial value)."""
    for m in model.modules():
        if isinstance(m, _Masked):
            m._structure_deferred = True


def _padded(major, minor, n_major, n_minor, nnz):
    """(minor index, block number) per major index, padded to the fullest (padding: n_minor, nnz)."""
    order = torch.argsort(major * n_minor + minor)
    m = major[order]
    count = torch.bincount(m, minlength=n_major)
    width = max(int(count.max()) if count.numel() else 0, 1)
    start = torch.cumsum(count, 0) - count
    pos = torch.arange(len(m)) - start[m]
    cols = torch.full((n_major, width), n_minor, dtype=torch.long)
    slots = torch.full((n_major, width), nnz, dtype=torch.long)
    cols[m, pos] = minor[order]
    slots[m, pos] = order
    return cols, slots


def _buckets(major, minor, n_major, device=None):
    """(majors, their minors, their block numbers) per count of blocks: one batched matmul each."""
    order = torch.argsort(major * (int(minor.max()) + 1 if minor.numel() else 1) + minor)
    m = major[order]
    count = torch.bincount(m, minlength=n_major)
    start = torch.cumsum(count, 0) - count
    out = []
    for c in sorted(set(count.tolist()) - {0}):
        rows = (count == c).nonzero().flatten()
        pos = start[rows][:, None] + torch.arange(c)[None, :]
        out.append((rows.to(device), minor[order][pos].to(device), order[pos].to(device)))
    return out


def apply_structures(model, seed, table, masks=None, mix=None):
    """Draw every structured layer's mask or block layout from the build seed and its name (rows of
    `table`: (layer, salt, file)), or take it from `masks` (layer -> tensor: the weight's mask, or the
    block grid of a block layout); then zero the weights it prunes. A layer whose spec names a file must
    be given its mask."""
    masks = dict(masks or {})
    for m in model.modules():
        m.__dict__.pop("_structure_deferred", None)
    for name, salt, file in table:
        m = model.get_submodule(name)
        given = masks.pop(name, None)
        if given is None and file:
            raise ValueError(f"layer `{name}` takes its mask from {file!r}: pass masks={{{name!r}: tensor}}")
        g = torch.Generator()
        g.manual_seed(mix(seed, salt) if mix is not None else seed ^ salt)
        m.reset_structure(generator=g, mask=None if given is None else torch.as_tensor(given))
    if masks:
        raise KeyError(f"masks given for layers without one: {', '.join(sorted(masks))}")
