"""LSUV, layer-sequential unit-variance initialisation (Mishkin & Matas, "All you need is a good init",
2016): data-dependent, after the spec's own init.

1. Every dense and convolution weight is replaced by an orthonormal one (`torch.nn.init.orthogonal_`);
   a masked weight keeps its zeros; factored and block-sparse layers keep the spec's init.
2. Layer by layer, in the order a forward pass reaches them, the calibration batch is run up to that
   layer and its weight (a factored layer: the factor applied last; a block-sparse one: its blocks) is
   divided by the standard deviation of its output, until the output variance
   is within `tol` of 1 (or `max_iter` rounds). The forward pass stops at the layer being fitted.

Layers whose weight is all zero (Fixup's last layers, a LoRA B) are left alone: their output variance is
0 on purpose; so are frozen layers (`frozen(...)`, random features the spec fixes). Imports torch: only the compiled-module side uses it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class LayerFit:
    name: str
    before: float           # output variance after the orthonormal pre-init
    after: float            # output variance when done
    rounds: int             # rescalings applied
    skipped: str = ""       # why the layer was left alone ("" if fitted)


class _Stop(Exception):
    pass


def lsuv(model: Any, batch: Any, tol: float = 0.1, max_iter: int = 10, seed: int = 0,
         progress: Optional[Callable[[int, int, LayerFit], None]] = None) -> list[LayerFit]:
    """Initialise `model` in place with LSUV on `batch` (a tensor, or a tuple of tensors for several
    inputs); returns what happened per layer. `progress(i, n, fit)` is called after each layer."""
    import torch
    from torch import nn

    if not tol > 0 or max_iter < 1:
        raise ValueError("tol must be positive and max_iter at least 1")
    args = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
    from ..sparsity.project import kind_of

    layers = [(n, m) for n, m in model.named_modules()
              if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and m.weight.dim() >= 2
              or kind_of(m) in ("monarch", "lowrank", "block", "symmetric")]
    scaled = {n: _scaled(m, kind_of(m)) for n, m in layers}
    order: list[str] = []
    hooks = []
    for name, m in layers:
        hooks.append(m.register_forward_hook(lambda mod, i, o, name=name: order.append(name)
                                             if name not in order else None))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*args)
    finally:
        for h in hooks:
            h.remove()
    by_name = dict(layers)
    order = [n for n in order if n in by_name]          # layers the batch reaches, in forward order
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in order:
            m = by_name[name]
            if kind_of(m) in ("monarch", "lowrank", "block", "symmetric"):
                continue
            w = m.weight
            if w.abs().max() == 0 or not w.requires_grad:
                continue
            q = torch.empty(w.shape, dtype=torch.float32)
            nn.init.orthogonal_(q, generator=g)
            w.copy_(q)
            if kind_of(m) == "masked":
                w.mul_(m.weight_mask)
    fits: list[LayerFit] = []
    try:
        for i, name in enumerate(order):
            m = by_name[name]
            w = scaled[name]
            if not w.requires_grad:
                v = _output_var(model, m, args)
                fit = LayerFit(name, v, v, 0, "frozen")
            elif w.abs().max() == 0:
                fit = LayerFit(name, 0.0, 0.0, 0, "its weight starts at zero")
            else:
                before = var = _output_var(model, m, args)
                rounds = 0
                while abs(var - 1.0) >= tol and rounds < max_iter and var > 1e-20:
                    with torch.no_grad():
                        w.div_(var ** 0.5)
                    rounds += 1
                    var = _output_var(model, m, args)
                fit = LayerFit(name, before, var, rounds, "" if var > 1e-20 else "its output is zero")
            fits.append(fit)
            if progress is not None:
                progress(i + 1, len(order), fit)
    finally:
        model.train(was_training)
    return fits


def _scaled(m, kind: str):
    """The tensor LSUV rescales: the weight, or for a factored layer the factor applied last, for a
    block-sparse one its blocks."""
    attr = {"monarch": "weight_l", "lowrank": "weight_u", "block": "weight_blocks",
            "symmetric": "weight_packed"}.get(kind, "weight")
    return getattr(m, attr)


def _output_var(model, layer, args) -> float:
    import torch

    got = []

    def hook(mod, i, o):
        got.append(o.detach().float().var().item())
        raise _Stop

    h = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(*args)
    except _Stop:
        pass
    finally:
        h.remove()
    return got[0]
