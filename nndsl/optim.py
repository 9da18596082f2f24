"""Optimizer parameter groups for a compiled model's parametrization (μP and friends).

    model = nndsl.load("mlp.nn")
    opt = torch.optim.Adam(nndsl.optim.param_groups(model, lr=1e-3), lr=1e-3)

The generated source carries the same function (`param_groups` beside `build`) and the per-parameter
learning-rate multipliers the parametrization pass computed (nndsl/passes/parametrize.py); a model
without a parametrization gets one group at `lr`.
"""
from __future__ import annotations

from typing import Any


def param_groups(model: Any, lr: float, optimizer: str = "adam", **options: Any) -> list[dict]:
    """Groups for torch.optim: one per learning-rate multiplier. `optimizer` is "adam" (Adam, AdamW and
    other Adam-like optimizers) or "sgd"; `options` (weight_decay, momentum, ...) go into every group."""
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    table = getattr(type(model), "lr_multipliers", None) or {}
    col = 0 if optimizer == "adam" else 1
    groups: dict[float, list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:          # `frozen(...)` parameters are not trained
            continue
        groups.setdefault(table.get(name, (1.0, 1.0))[col], []).append(p)
    return [{"params": ps, "lr": lr * mult, **options} for mult, ps in sorted(groups.items())]
