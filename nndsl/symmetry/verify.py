"""Numerical verification of symmetry claims (`nndsl check --verify-equivariance`): the compiled model, in
float64, with every parameter perturbed at random (a symmetry of the architecture holds for any weights, not
only for a layer norm's initial ones), on sampled inputs and sampled group elements. Per claim on a tensor of
the model's own body (an output or any binding), the largest deviation max |f(g·x) − g·f(x)| (for
`invariant`, g·f(x) = f(x)); the claimed tensor is acted on by the roles the equivariance pass recorded
for its axes.

Elements, per factor of the group: a random permutation of the set axes (`perm`), a random roll
(`cyclic`; and a reversal, `dihedral`), a random rotation and flip of the grid with the matching
permutation of group axes (`c4`, `d4`), a random orthogonal matrix on the coordinates (`o3`; of
determinant +1, `so3`; and a random translation of the inputs and of equivariant outputs, `e3`). A
product's element is one element of each factor."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verified:
    tensor: str
    claim: str
    group: str
    error: float             # max deviation over the samples (nan: inside a block, not verified)
    samples: int


MAX_ELEMENTS = 1 << 26       # parameters plus sampled input entries the verification may allocate (float64)


class TooLarge(ValueError):
    """The model or its sampled inputs would exceed MAX_ELEMENTS: checked before anything is allocated."""


def _sizes(ir, sizes: dict) -> dict:
    """Free dims: 5 unless given, moved into their stated ranges and rounded up to their facts; acted dims too."""
    from ..passes.ensures import sample_dims

    out = sample_dims(ir, sizes)
    for a in ir.meta.actions:
        out.setdefault(a.dim, 5)
    return out


def verify(ir, samples: int = 8, seed: int = 0, sizes: dict | None = None) -> list[Verified]:
    """Check every claim of a checked IR numerically. Free dims take `sizes` (default 5). Raises TooLarge
    before allocating a model and inputs beyond MAX_ELEMENTS."""
    import math

    from ..passes.ensures import param_count

    sizes = _sizes(ir, dict(sizes or {}))
    shapes = [[d.value if d.is_const else sizes.get(str(d), 5) for d in mi.type.shape] for mi in ir.meta.inputs]
    total = param_count(ir) + param_count(ir, kinds=("buffer",)) + sum(math.prod(s) for s in shapes)
    if total > MAX_ELEMENTS:
        raise TooLarge(f"verifying `{ir.meta.model}` would allocate {total:,} values, more than {MAX_ELEMENTS:,}")

    import torch

    from ..backends.torch_codegen import generate
    from ..backends.torch_module import module_from_source
    from ..ir import ModelOutput

    # claimed tensors of the model's own body become extra outputs of the verified module
    outputs = list(ir.meta.outputs)
    index = {(o.node, o.port): i for i, o in enumerate(outputs)}
    for c in ir.meta.claims:
        if (c.node, c.port) not in index and ir.node(c.node).scope == "" and ir.node(c.node).op != "input":
            index[(c.node, c.port)] = len(outputs)
            outputs.append(ModelOutput(name=c.tensor, node=c.node, port=c.port))
    saved = ir.meta.outputs
    ir.meta.outputs = outputs
    try:
        src, cls = generate(ir)
    finally:
        ir.meta.outputs = saved
    mod = module_from_source(src, cls, ir.meta.model)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = mod.build(seed).double().eval()
    with torch.no_grad():      # a symmetry of the architecture holds for any weights, not just the initial ones
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    inputs = []
    for mi, shape in zip(ir.meta.inputs, shapes):
        if mi.type.is_float:
            inputs.append(torch.randn(*shape, generator=g, dtype=torch.float64))
        else:
            inputs.append(torch.randint(0, 2, shape, generator=g))
    input_of = {mi.node: k for k, mi in enumerate(ir.meta.inputs)}
    out = []

    def run(xs):
        ys = model(*xs)
        return ys if isinstance(ys, tuple) else (ys,)

    with torch.no_grad():
        ys = run(inputs)
        for c in ir.meta.claims:
            idx = index.get((c.node, c.port))
            if idx is None:
                out.append(Verified(c.tensor, c.claim, c.group, math.nan, 0))
                continue
            factors = sorted({a.factor for a in ir.meta.actions if a.group == c.group})
            worst = 0.0
            for _ in range(samples):
                xs = list(inputs)
                want = ys[idx]
                for k in factors:
                    acts = [a for a in ir.meta.actions if a.group == c.group and a.factor == k]
                    el = _sample(acts[0].kind, acts, xs, input_of, g)
                    for node in {a.node for a in acts}:
                        i = input_of[node]
                        roles = [""] * xs[i].dim()
                        for a in acts:
                            if a.node == node:
                                roles[a.axis] = a.role
                        xs[i] = _act(acts[0].kind, el, xs[i], roles, translate=True)
                    if c.claim == "equivariant":
                        roles = c.roles.get(k, [])
                        if any(roles) and want is not None:
                            want = _act(acts[0].kind, el, want, roles, translate=True)
                got = run(xs)[idx]
                worst = max(worst, float((got - want).abs().max()) if want is not None else math.inf)
            out.append(Verified(c.tensor, c.claim, c.group, worst, samples))
    return out


def _sample(kind, acts, xs, input_of, g):
    """One random element of the factor."""
    import torch

    a = acts[0]
    n = xs[input_of[a.node]].shape[a.axis]
    if kind == "perm":
        return torch.randperm(n, generator=g)
    if kind in ("cyclic", "dihedral"):
        shift = int(torch.randint(0, n, (1,), generator=g))
        flip = kind == "dihedral" and bool(torch.randint(0, 2, (1,), generator=g))
        return (shift, flip)
    if kind in ("c4", "d4"):
        return int(torch.randint(0, 4 if kind == "c4" else 8, (1,), generator=g))
    if kind == "matrices":                  # a random word in the generators
        gens = [torch.tensor(m, dtype=torch.float64) for m in a.gens]
        q = torch.eye(n, dtype=torch.float64)
        for _ in range(int(torch.randint(0, 13, (1,), generator=g))):
            q = gens[int(torch.randint(0, len(gens), (1,), generator=g))] @ q
        return (q, None)
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if kind == "so3" and torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    t = torch.randn(n, generator=g, dtype=torch.float64) if kind == "e3" else None
    return (q, t)


def _act(kind, el, x, roles, translate):
    """The element acting on tensor x whose axes carry `roles`."""
    import torch

    from . import runtime as R

    if kind == "perm":
        for axis, r in enumerate(roles):
            if r == "perm" and x.shape[axis] == len(el):
                x = x.index_select(axis, el.to(x.device))
        return x
    if kind in ("cyclic", "dihedral"):
        return R._roll_flip(x, list(roles), el[0], el[1])
    if kind in ("c4", "d4"):
        if ("row" in roles) != ("col" in roles):
            return None                     # one grid axis left: no rotation of this tensor is defined
        return R.grid_transform(x, kind, el, list(roles))
    q, t = el
    for axis, r in enumerate(roles):
        if r == "vec":
            xm = x.movedim(axis, -1) @ q.T.to(x.dtype)
            if t is not None and translate:
                xm = xm + t.to(x.dtype)
            x = xm.movedim(-1, axis)
    return x
