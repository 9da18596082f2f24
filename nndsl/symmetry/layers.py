"""Equivariant layers from the solver's bases (torch).

`EquivariantLinear(rep_in, rep_out, c_in, c_out)` maps [..., c_in, dim_in] to [..., c_out, dim_out]
with weight W[co, ci] = Σ_m θ[co, ci, m] B_m, B = basis(rep_out, rep_in): the basis is contracted once
per forward (one small einsum), then one matmul; the bias is a combination of the invariant vectors of
rep_out. Every weight the coefficients can reach commutes with the group, so the layer is equivariant
by construction: f(ρ_in(g) x) = ρ_out(g) f(x).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import Rep, basis, trivial


class EquivariantLinear(nn.Module):
    def __init__(self, rep_in: Rep, rep_out: Rep, c_in: int = 1, c_out: int = 1, bias: bool = True,
                 dtype=None, device=None):
        super().__init__()
        b = basis(rep_out, rep_in)
        kw = {"dtype": dtype or torch.get_default_dtype(), "device": device}
        self.rep_in, self.rep_out, self.c_in, self.c_out = rep_in, rep_out, c_in, c_out
        self.register_buffer("basis", torch.as_tensor(b, **kw), persistent=False)
        self.weight = nn.Parameter(torch.empty(c_out, c_in, b.shape[0], **kw))
        if bias:
            inv = basis(rep_out, trivial(rep_out.group))[:, :, 0]          # invariant vectors of rep_out
            self.register_buffer("bias_basis", torch.as_tensor(inv, **kw), persistent=False)
            self.bias = nn.Parameter(torch.empty(c_out, inv.shape[0], **kw))
        else:
            self.bias = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Coefficients drawn so that the weight's entries have variance 1 / fan_in, as a dense layer's
        default would (fan_in = c_in · dim_in), whatever the basis' scale."""
        fan_in = self.c_in * self.rep_in.dim
        if self.basis.shape[0]:
            mean_sq = float(self.basis.pow(2).sum(0).mean())
            std = 1.0 / math.sqrt(fan_in * max(mean_sq, 1e-12))
            nn.init.normal_(self.weight, 0.0, std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def dense_weight(self) -> torch.Tensor:
        """W as [c_out, dim_out, c_in, dim_in]."""
        return torch.einsum("abm,moi->aobi", self.weight, self.basis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-2]
        w = self.dense_weight().reshape(self.c_out * self.rep_out.dim, self.c_in * self.rep_in.dim)
        y = x.reshape(*lead, -1) @ w.t()
        y = y.reshape(*lead, self.c_out, self.rep_out.dim)
        if self.bias is not None and self.bias.shape[1]:
            y = y + self.bias @ self.bias_basis
        return y

    def extra_repr(self) -> str:
        return (f"{self.rep_in.name} -> {self.rep_out.name} of {self.rep_in.group.name}, channels {self.c_in} -> "
                f"{self.c_out}, {self.basis.shape[0]} basis maps")


def act(rep: Rep, element: int, x: torch.Tensor) -> torch.Tensor:
    """ρ(g) applied to the last axis of x, for the group element with that index (generators compose it)."""
    import numpy as np

    g = rep.group
    # the element as a word in the generators: BFS from the identity
    target = g.elements[element]
    word = _word(g, target)
    m = np.eye(rep.dim)
    for k in word:
        m = rep.matrix(k) @ m
    return x @ torch.as_tensor(m, dtype=x.dtype, device=x.device).t()


def _word(g, target) -> list[int]:
    ident = tuple(range(g.degree))
    prev = {ident: None}
    frontier = [ident]
    while frontier and target not in prev:
        nxt = []
        for a in frontier:
            for k, gen in enumerate(g.generators):
                b = g.compose(gen, a)
                if b not in prev:
                    prev[b] = (a, k)
                    nxt.append(b)
        frontier = nxt
    word = []
    cur = target
    while prev[cur] is not None:
        cur, k = prev[cur]
        word.append(k)
    return word[::-1]


def _sampled(rep: Rep, samples: int, seed: int) -> list[int]:
    import random

    n = rep.group.order
    rng = random.Random(seed)
    return list(range(n)) if n <= samples else rng.sample(range(n), samples)


def equivariance_error(f, x: torch.Tensor, rep_in: Rep, rep_out: Rep, samples: int = 16, seed: int = 0) -> float:
    """max over sampled group elements g of ‖f(ρ_in(g)·x) − ρ_out(g)·f(x)‖∞, the representations acting
    on the last axis of the input and of the output (`rep_out` trivial: an invariance test)."""
    with torch.no_grad():
        y = f(x)
        worst = 0.0
        for e in _sampled(rep_in, samples, seed):
            got = f(act(rep_in, e, x))
            want = act(rep_out, e, y) if rep_out.dim == y.shape[-1] else y
            worst = max(worst, float((got - want).abs().max()))
    return worst


def penalty(f, x: torch.Tensor, rep_in: Rep, rep_out: Rep, samples: int = 4, seed: int = 0) -> torch.Tensor:
    """A soft-equivariance regulariser: the mean over sampled group elements of
    ‖f(ρ_in(g)·x) − ρ_out(g)·f(x)‖² / ‖f(x)‖², differentiable; add λ·penalty to the loss."""
    y = f(x)
    scale = y.detach().pow(2).mean().clamp_min(1e-12)
    terms = []
    for e in _sampled(rep_in, samples, seed):
        got = f(act(rep_in, e, x))
        want = act(rep_out, e, y) if rep_out.dim == y.shape[-1] else y
        terms.append((got - want).pow(2).mean() / scale)
    return torch.stack(terms).mean()
