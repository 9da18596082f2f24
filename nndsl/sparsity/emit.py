"""How a structured layer appears in the generated PyTorch source: the layer's own constructor with its
class swapped for the runtime's (nndsl/sparsity/runtime.py, copied into the source) and the structure as
keyword arguments. State-dict names stay the layer's (`fc.weight`, `fc.weight_mask`, `fc.weight_r`)."""
from __future__ import annotations

import functools
from pathlib import Path

from ..pyemit import lit

_CLASSES = {
    "masked": "Masked{cls}", "nm": "Masked{cls}", "block-dense": "Masked{cls}", "block": "BlockSparse{cls}",
    "monarch": "Monarch{cls}", "lowrank": "LowRank{cls}", "symmetric": "Symmetric{cls}",
}


def lower(structure, base):
    """The Lowered of a structured layer from its dense lowering `base` (`nn.Linear(64, 128)`)."""
    from ..ops.registry import Lowered

    init = base.init
    if not init or not init.startswith("nn.") or not init.endswith(")") or "(" not in init:
        raise ValueError(f"cannot structure the layer built by {init!r}")
    cls = init[3:init.index("(")]
    s = structure
    dense_masked = s.kernel == "dense+mask"
    kind = "block-dense" if s.kind == "block" and dense_masked else s.kind
    new_cls = _CLASSES[kind].format(cls=cls)
    if dense_masked:
        args = {k: v for k, v in s.args.items() if v is not None and not k.startswith(("file_", "layer_", "layout_"))}
        if s.kind == "block":
            b = int(args["size"])
            args["blocks"] = s.nonzero // (b * b)
        args["keep"] = s.nonzero
        if s.kind == "masked" and s.rule == "erk":
            args["density"] = s.density
        extra = f"sparsity=({lit(s.rule)}, {{{', '.join(f'{lit(k)}: {lit(v)}' for k, v in args.items())}}})"
    elif s.kind == "monarch":
        extra = f"blocks={lit(s.args['blocks'])}"
    elif s.kind == "lowrank":
        extra = f"rank={lit(s.args['rank'])}"
    elif s.kind == "symmetric":
        extra = ""
    elif s.kind == "block":
        b = int(s.args["size"])
        extra = f"size={b}, nnz={s.nonzero // (b * b)}"
    else:
        raise ValueError(f"no lowering for {s.kind}")
    body = init[init.index("(") + 1:-1]
    sep = ", " if body and extra else ""
    return Lowered(f"{new_cls}({body}{sep}{extra})", base.expr, base.imports)


@functools.lru_cache(maxsize=1)
def prelude() -> str:
    """The runtime's source, for the generated file."""
    lines = (Path(__file__).with_name("runtime.py")).read_text(encoding="utf-8").split("\n")
    start = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))   # after the header
    return "\n# -- sparse and structured layers " + "-" * 66 + "\n" + "\n".join(lines[start:])
