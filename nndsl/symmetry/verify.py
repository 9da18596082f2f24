"""Numerical verification of symmetry claims (`nndsl check --verify-equivariance`): the compiled model,
in float64, with every parameter perturbed at random (a symmetry of the architecture holds for any
weights, not only for a layer norm's initial ones), on sampled inputs and sampled permutations of the
acted axes; per claim on a model output, the largest deviation max |f(g·x) − g·f(x)| (for `invariant`,
g·f(x) = f(x))."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verified:
    tensor: str
    claim: str
    group: str
    error: float             # max deviation over the samples (nan: not an output, not verified)
    samples: int


MAX_ELEMENTS = 1 << 26       # parameters plus sampled input entries the verification may allocate (float64)


class TooLarge(ValueError):
    """The model or its sampled inputs would exceed MAX_ELEMENTS: checked before anything is allocated."""


def verify(ir, samples: int = 8, seed: int = 0, sizes: dict | None = None) -> list[Verified]:
    """Check every claim of a checked IR numerically. Free dims take `sizes` (default 5). Raises TooLarge
    before allocating a model and inputs beyond MAX_ELEMENTS."""
    import math

    from ..passes.ensures import param_count

    sizes = dict(sizes or {})
    for a in ir.meta.actions:
        sizes.setdefault(a.dim, 5)
    shapes = [[d.value if d.is_const else sizes.get(str(d), 5) for d in mi.type.shape] for mi in ir.meta.inputs]
    total = param_count(ir) + param_count(ir, kinds=("buffer",)) + sum(math.prod(s) for s in shapes)
    if total > MAX_ELEMENTS:
        raise TooLarge(f"verifying `{ir.meta.model}` would allocate {total:,} values, more than {MAX_ELEMENTS:,}")

    import torch

    from ..backends.torch_codegen import generate
    from ..backends.torch_module import module_from_source

    src, cls = generate(ir)
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
    outputs = {(o.node, o.port): i for i, o in enumerate(ir.meta.outputs)}
    input_of = {mi.node: k for k, mi in enumerate(ir.meta.inputs)}
    acted_ids = {}
    for a in ir.meta.actions:
        acted_ids.setdefault(a.group, set()).add(ir.node(a.node).axes[0][a.axis])
    out = []
    with torch.no_grad():
        ys = model(*inputs)
        ys = ys if isinstance(ys, tuple) else (ys,)
        for c in ir.meta.claims:
            idx = outputs.get((c.node, c.port))
            if idx is None:
                out.append(Verified(c.tensor, c.claim, c.group, math.nan, 0))
                continue
            acts = [a for a in ir.meta.actions if a.group == c.group]
            ids = ir.node(c.node).axes[c.port]
            worst = 0.0
            n = inputs[input_of[acts[0].node]].shape[acts[0].axis]
            for _ in range(samples):
                perm = torch.randperm(n, generator=g)
                xs = list(inputs)
                for a in acts:
                    xs[input_of[a.node]] = xs[input_of[a.node]].index_select(a.axis, perm)
                got = model(*xs)
                got = (got if isinstance(got, tuple) else (got,))[idx]
                want = ys[idx]
                for axis, i in enumerate(ids if c.claim == "equivariant" else ()):
                    if i in acted_ids[c.group] and want.shape[axis] == n:
                        want = want.index_select(axis, perm)
                worst = max(worst, float((got - want).abs().max()))
            out.append(Verified(c.tensor, c.claim, c.group, worst, samples))
    return out
