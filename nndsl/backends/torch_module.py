"""Build an in-memory torch.nn.Module from the generated source (the same code `nndsl compile` writes,
so the two agree by construction)."""
from __future__ import annotations

import hashlib
import linecache
import sys
import types

from ..ir import IR
from .torch_codegen import generate


def module_from_source(source: str, cls_name: str, tag: str):
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    modname = f"nndsl_generated.{_ident(tag)}_{digest}"
    mod = sys.modules.get(modname)
    if mod is None:
        filename = f"<nndsl:{tag}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        code = compile(source, filename, "exec")
        mod = types.ModuleType(modname)
        mod.__file__ = filename
        sys.modules.setdefault("nndsl_generated", types.ModuleType("nndsl_generated"))
        sys.modules[modname] = mod
        exec(code, mod.__dict__)
    return mod


def build_module(ir: IR, seed: int | None = None):
    source, cls = generate(ir)
    mod = module_from_source(source, cls, ir.meta.model)
    masks = mask_files(ir)
    return mod.build(seed, masks=masks) if masks else mod.build(seed)


def mask_files(ir: IR) -> dict:
    """The masks and block layouts the spec reads from files (checked by the sparsity pass), by layer."""
    import numpy as np
    import torch

    out = {}
    for n in ir.nodes():
        st = n.facets.get("structure")
        if st is not None and st.mask_file:
            out[n.id] = torch.from_numpy(np.load(st.mask_file, allow_pickle=False) != 0)
    return out


def _ident(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s)
