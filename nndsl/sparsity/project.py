"""Projections of dense weights onto the declared structures, and loading a dense checkpoint into a
structured model (`nndsl project SPEC --weights dense.pt -o out.pt`).

Each projection is the best approximation in the Frobenius norm within its structure:
- monarch: per pair of blocks, a truncated SVD (the factors of different pairs share no entry, so the
  pairs are independent; exact on a matrix that is already Monarch);
- nm: the n largest magnitudes of every m consecutive inputs;
- block: the blocks of largest norm;
- lowrank: the truncated SVD, its singular values split evenly between the two factors;
- a mask of density d (random, erk, magnitude): the d largest magnitudes. A mask read from a file is kept;
- symmetric: (W + Wᵀ) / 2.
"""
from __future__ import annotations

import math

import torch

from .runtime import make_mask, monarch_dense

KINDS = ("monarch", "nm", "block", "lowrank", "magnitude", "symmetric")


def project(weight: torch.Tensor, kind: str, **args) -> dict[str, torch.Tensor]:
    """The stored tensors of `kind` closest to the dense `weight` ([out, in] or [out, in, *window]):
    monarch(blocks) -> weight_r, weight_l; nm(n=2, m=4) and magnitude(density) -> weight, weight_mask;
    block(size, density= or blocks=) -> weight_blocks, weight_index; lowrank(rank) -> weight_v, weight_u."""
    w = weight.detach()
    if kind == "monarch":
        return _monarch(w, int(args["blocks"]))
    if kind == "nm":
        n, m = int(args.get("n", 2)), int(args.get("m", 4))
        keep = w.numel() // m * n
        mask = make_mask("nm", {"n": n, "m": m, "keep": keep}, w)
        return {"weight": w * mask, "weight_mask": mask}
    if kind == "magnitude":
        keep = args.get("keep")
        keep = int(keep) if keep is not None else max(1, int(round(float(args["density"]) * w.numel())))
        mask = make_mask("magnitude", {"keep": keep}, w)
        return {"weight": w * mask, "weight_mask": mask}
    if kind == "block":
        return _block(w, int(args["size"]), args.get("density"), args.get("blocks"))
    if kind == "lowrank":
        return _lowrank(w, int(args["rank"]))
    if kind == "symmetric":
        if w.shape[0] != w.shape[1] or w.dim() != 2:
            raise ValueError(f"a symmetric weight is square, not {list(w.shape)}")
        i, j = torch.triu_indices(w.shape[0], w.shape[0])
        return {"weight_packed": ((w + w.t()) / 2)[i, j].contiguous()}
    raise ValueError(f"unknown structure {kind!r}: one of {', '.join(KINDS)}")


def _monarch(w: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    n_out, n_in = w.shape
    if n_in % k or n_out % k:
        raise ValueError(f"{k} blocks do not divide a {n_out}x{n_in} matrix")
    p, s = n_in // k, n_out // k
    q = p if n_in < n_out else s
    if q % k:
        raise ValueError(f"{k} blocks: the inner block size {q} is not a multiple of {k}")
    c = q // k
    # dense entry (s_i*k + l, kk*p + pp) = sum_t L[l, s_i, kk*c + t] * R[kk, t*k + l, pp]: per (l, kk) a
    # product of an s x c and a c x p matrix
    sub = w.reshape(s, k, k, p).permute(1, 2, 0, 3).to(torch.float64)          # (l, kk, s, p)
    u, sv, vh = torch.linalg.svd(sub, full_matrices=False)
    root = sv[..., :c].sqrt()
    a = u[..., :c] * root.unsqueeze(-2)                                          # (l, kk, s, c)
    b = root.unsqueeze(-1) * vh[..., :c, :]                                      # (l, kk, c, p)
    l_factor = a.permute(0, 2, 1, 3).reshape(k, s, k * c)
    r_factor = b.permute(1, 2, 0, 3).reshape(k, c * k, p)
    return {"weight_r": r_factor.to(w.dtype).contiguous(), "weight_l": l_factor.to(w.dtype).contiguous()}


def _block(w, b, density=None, blocks=None):
    out, cin = w.shape[0], w.shape[1]
    if out % b or cin % b:
        raise ValueError(f"{b}x{b} blocks do not divide a {out}x{cin} matrix")
    rows, cols = out // b, cin // b
    nnz = int(blocks) if blocks is not None else max(1, int(round(float(density) * rows * cols)))
    grid4 = w.reshape(rows, b, cols, b).permute(0, 2, 1, 3)                      # (rows, cols, b, b)
    norms = grid4.pow(2).sum((2, 3)).flatten()
    top = torch.topk(norms, nnz).indices
    grid = torch.zeros(rows * cols, dtype=torch.bool, device=w.device)
    grid[top] = True
    grid = grid.view(rows, cols)
    idx = grid.nonzero()
    return {"weight_blocks": grid4[idx[:, 0], idx[:, 1]].contiguous(), "weight_index": idx, "grid": grid}


def _lowrank(w, r):
    out = w.shape[0]
    flat = w.reshape(out, -1).to(torch.float64)
    u, sv, vh = torch.linalg.svd(flat, full_matrices=False)
    root = sv[:r].sqrt()
    uu = (u[:, :r] * root).to(w.dtype)
    vv = (root[:, None] * vh[:r]).to(w.dtype)
    window = w.shape[2:]
    return {"weight_u": uu.reshape(out, r, *(1,) * len(window)).contiguous(),
            "weight_v": vv.reshape(r, w.shape[1], *window).contiguous()}


def kind_of(module) -> str:
    """The structure of a layer, by what it stores (the generated source carries its own copy of the
    runtime's classes, so layers are recognised by their tensors, not their class)."""
    has = lambda n: n in module._parameters or n in module._buffers  # noqa: E731
    if has("weight_mask") and hasattr(module, "sparsity"):
        return "masked"
    if has("weight_r") and has("weight_l"):
        return "monarch"
    if has("weight_u") and has("weight_v"):
        return "lowrank"
    if has("weight_blocks") and has("weight_index"):
        return "block"
    if has("weight_packed"):
        return "symmetric"
    return ""


def dense_weight(module) -> torch.Tensor:
    """The dense weight a layer (structured or not) computes with."""
    if kind_of(module) == "monarch":
        return monarch_dense(module.weight_r, module.weight_l)
    if hasattr(module, "dense_weight"):
        return module.dense_weight()
    return module.weight


@torch.no_grad()
def load_dense(model: torch.nn.Module, state_dict: dict, strict: bool = True) -> dict:
    """Load a dense checkpoint (the state dict of the same network without structure) into a structured
    model: every structured layer gets the projection of its dense weight onto its structure, every other
    entry is copied. Returns {layer: relative Frobenius error of the projection}."""
    sd = dict(state_dict)
    errors = {}
    target = {}
    for name, m in model.named_modules():
        pre = name + "." if name else ""
        kind = kind_of(m)
        if not kind:
            continue
        key = pre + "weight"
        if key not in sd:
            if strict:
                raise KeyError(f"the dense checkpoint has no `{key}`")
            continue
        w = sd.pop(key).to(dtype=next(m.parameters()).dtype)
        if kind == "masked":
            rule, args = m.sparsity
            if tuple(w.shape) != tuple(m.weight.shape):
                raise ValueError(f"`{key}` is {list(w.shape)}, the layer's weight {list(m.weight.shape)}")
            if rule == "mask":
                got = {"weight": w * m.weight_mask, "weight_mask": m.weight_mask.clone()}
            elif rule == "nm":
                got = project(w, "nm", n=args["n"], m=args["m"])
            elif rule == "block":
                grid = _block(w, int(args["size"]), blocks=int(args["blocks"]))["grid"]
                b = int(args["size"])
                mask = grid.repeat_interleave(b, 0).repeat_interleave(b, 1)
                got = {"weight": w * mask, "weight_mask": mask}
            else:
                got = project(w, "magnitude", keep=args["keep"])
        elif kind == "monarch":
            got = project(w, "monarch", blocks=m.blocks)
        elif kind == "lowrank":
            got = project(w, "lowrank", rank=m.rank)
        elif kind == "symmetric":
            got = project(w, "symmetric")
        else:
            got = project(w, "block", size=m.size, blocks=m.nnz)
            got.pop("grid")
        for k, v in got.items():
            target[pre + k] = v
        approx = _dense_of(m, got, w)
        errors[name] = float((approx - w).norm() / w.norm().clamp_min(1e-30))
    for k, v in sd.items():
        target[k] = v
    missing, unexpected = model.load_state_dict(target, strict=False)
    if strict and (missing or unexpected):
        raise KeyError(f"dense checkpoint does not match the model: missing {missing}, unexpected {unexpected}")
    return errors


def _dense_of(m, got, w):
    if "weight_packed" in got:
        return got["weight_packed"][m.weight_index]
    if "weight_r" in got:
        return monarch_dense(got["weight_r"], got["weight_l"])
    if "weight_u" in got:
        out, r = got["weight_u"].shape[:2]
        return (got["weight_u"].reshape(out, r) @ got["weight_v"].reshape(r, -1)).reshape(w.shape)
    if "weight_blocks" in got:
        b = got["weight_blocks"].shape[-1]
        rows, cols = w.shape[0] // b, w.shape[1] // b
        d = w.new_zeros(rows, cols, b, b)
        d[got["weight_index"][:, 0], got["weight_index"][:, 1]] = got["weight_blocks"]
        return d.permute(0, 2, 1, 3).reshape(w.shape)
    return got["weight"]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / max(float(b.norm()), 1e-30))


__all__ = ["project", "load_dense", "dense_weight", "relative_error", "math"]
