"""Per-layer summary from the checked IR (no torch): names, ops, shapes, parameters, FLOPs."""
from __future__ import annotations

from dataclasses import dataclass

from ..dims import Dim
from ..ir import IR
from ..passes.ensures import param_count


@dataclass
class Row:
    name: str
    op: str
    shape: str
    params: int
    flops: Dim


def rows(ir: IR) -> list[Row]:
    out = []
    for n in ir.nodes():
        if n.op == "block_input":
            continue
        shape = ", ".join(str(t) for t in n.outputs) if n.outputs else "?"
        own = sum(p.numel for p in n.params if p.kind == "param" and p.tied_to is None)
        out.append(Row(n.id, n.op, shape, own, n.flops if n.flops is not None else Dim.const(0)))
    return out


def totals(ir: IR) -> dict:
    flops = Dim.const(0)
    for n in ir.nodes():
        if n.flops is not None:
            flops = flops + n.flops
    total = param_count(ir)
    return {"total_params": total, "trainable_params": param_count(ir, trainable_only=True),
            "nonzero_params": nonzero_count(ir),
            "buffers": param_count(ir, kinds=("buffer",)),
            "flops": flops.value if flops.is_const else str(flops)}


def nonzero_count(ir: IR) -> int:
    """Parameters that may be non-zero: a masked weight counts its kept entries, everything else what it
    stores."""
    total = 0
    for n in ir.nodes():
        st = n.facets.get("structure")
        for p in n.params:
            if p.kind != "param" or p.tied_to is not None:
                continue
            total += st.nonzero if st is not None and p.name == "weight" else p.numel
    return total


def sparsity_lines(ir: IR) -> list[str]:
    """Per sparse or structured layer: its rule, the weights it stores against the dense layer's, those
    that may be non-zero, its FLOPs against dense, and the path it takes on the CPU and on a GPU."""
    import math

    rows = []
    for n in ir.nodes():
        st = n.facets.get("structure")
        if st is None:
            continue
        from ..sparsity import describe_rule

        dense = math.prod(st.dense_shape)
        fl = n.flops.value if n.flops is not None and n.flops.is_const else None
        ratio = f"{fl / st.dense_flops:.3g}x" if fl is not None and st.dense_flops else \
            f"{st.stored / dense:.3g}x" if st.kernel != "dense+mask" else "1x"
        rows.append((cut_name(n.id), ("frozen " if st.frozen else "") + describe_rule(st.rule, st.args),
                     f"{st.stored:,}", f"{st.nonzero:,}", f"{dense:,}", ratio, st.kernel, st.gpu))
    if not rows:
        return []
    head = ("layer", "structure", "stored", "non-zero", "dense", "FLOPs", "CPU path", "GPU path (Triton)")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    fmt = lambda r: "  ".join(c.rjust(w) if 2 <= i <= 5 else c.ljust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    out = ["", "sparse and structured weights:", fmt(head), "  ".join("-" * w for w in widths)]
    out += [fmt(r) for r in rows]
    if any(n.facets["structure"].kernel == "dense+mask" for n in ir.nodes() if "structure" in n.facets):
        out.append("dense+mask: the weight is stored dense with its zeros kept through training; on the CPU it "
                   "runs as fast as dense, not faster")
    return out


def param_rows(n) -> list[dict]:
    """The parameters and buffers of one node with their facets (init rule, layout, ...)."""
    from ..facets import dump

    return [{"name": p.name, "shape": list(p.shape), "kind": p.kind, "dtype": p.dtype, "trainable": p.trainable,
             "tied_to": p.tied_to, "fan_in": p.fan_in, "fan_out": p.fan_out, "facets": dump(p.facets)}
            for p in n.params]


def to_dict(ir: IR) -> dict:
    nodes = {n.id: n for n in ir.nodes()}
    return {
        "model": ir.meta.model,
        "inputs": [{"name": i.name, "shape": str(i.type), "dtype": i.type.dtype} for i in ir.meta.inputs],
        "outputs": [{"name": o.name, "shape": str(ir.node(o.node).outputs[o.port]) if ir.node(o.node).outputs else "?"}
                    for o in ir.meta.outputs],
        **({"signal": signal_json(ir)} if ir.signal is not None else {}),
        "layers": [{"name": r.name, "op": r.op, "output_shape": r.shape, "params": r.params,
                    "flops": r.flops.value if r.flops.is_const else str(r.flops),
                    "axes": [[ir.axes[i].name for i in ids] for ids in nodes[r.name].axes if all(i in ir.axes for i in ids)],
                    **({"parameters": param_rows(nodes[r.name])} if nodes[r.name].params else {}),
                    **({"structure": nodes[r.name].facets["structure"].model_dump(mode="json")}
                       if "structure" in nodes[r.name].facets else {})}
                   for r in rows(ir)],
        **totals(ir),
    }


def fmt_count(n) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


MAX_CELL = 60


def table_lines(ir: IR) -> list[str]:
    """The per-layer table as fixed-width text: one pass to size the columns, one to print (linear in
    the rows; cells longer than MAX_CELL are cut with `...`)."""
    def cut(x: str) -> str:
        return x if len(x) <= MAX_CELL else x[:MAX_CELL - 3] + "..."

    head = ("layer", "op", "output shape", "params", "FLOPs")
    body = [(cut(r.name), cut(r.op), cut(r.shape), fmt_count(r.params) if r.params else "",
             cut(fmt_count(r.flops.value) if r.flops.is_const else str(r.flops))) for r in rows(ir)]
    right = (False, False, False, True, True)
    if ir.signal is not None:            # the signal pass ran: E[h²] at init and the gradient factor
        head += ("q", "chi")
        right += (True, True)
        sig = {n.id: n.facets.get("signal") for n in ir.nodes()}
        body = [row + (_g(sig.get(r.name), "q"), _g(sig.get(r.name), "chi")) for row, r in zip(body, rows(ir))]
    widths = [max([len(h)] + [len(row[i]) for row in body]) for i, h in enumerate(head)]

    def fmt(row):
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)).rstrip()

    return [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(row) for row in body]


def _g(f, attr: str) -> str:
    v = getattr(f, attr, None) if f is not None else None
    return "" if v is None else f"{v:.3g}"


def signal_json(ir: IR) -> dict:
    rep = ir.signal
    return {"assumed": dict(rep.assumed),
            "layers": [{"name": nid, "op": op, "q": q, "chi": chi, "grad": g} for nid, op, q, chi, g in rep.rows]}


def signal_lines(ir: IR) -> list[str]:
    """The signal table of `check --signal`: per layer (weighted or activation) the predicted second
    moment of its output q, the mean-field gradient factor chi of a weighted layer, and E[grad²] at its
    output relative to the model output's."""
    rep = ir.signal
    body = [(cut_name(nid), op, f"{q:.4g}", "" if chi is None else f"{chi:.4g}", "" if g is None else f"{g:.3g}")
            for nid, op, q, chi, g in rep.rows]
    head = ("layer", "op", "q = E[h²]", "chi", "E[grad²]")
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(head)]
    fmt = lambda r: "  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()  # noqa: E731
    out = ["", "signal at init (inputs: unit variance):", fmt(head), "  ".join("-" * w for w in widths)]
    out += [fmt(r) for r in body]
    if rep.assumed:
        out.append("free dims taken as " + ", ".join(f"{k}={v}" for k, v in sorted(rep.assumed.items()))
                   + " (bind with --dim)")
    return out


def cut_name(x: str) -> str:
    return x if len(x) <= MAX_CELL else x[:MAX_CELL - 3] + "..."


def init_lines(ir: IR) -> list[str]:
    """Per parameter with an init rule: the rule in force, the std of its entries, where it was declared
    and by which key; then how many keep PyTorch's default. Empty when the spec declares no rule."""
    if not ir.meta.inits:
        return []
    from pathlib import Path

    rows, default = [], 0
    for n in ir.nodes():
        for p in n.params:
            if p.kind != "param" or p.tied_to is not None:
                continue
            f = p.facets.get("init")
            if f is None or not f.prim:
                default += 1
                continue
            where = f"{Path(f.declared_at.rsplit(':', 1)[0]).name}:{f.declared_at.rsplit(':', 1)[-1]}"
            std = f"{f.std:.4g}" if f.std is not None else "-"
            rows.append((f.path, f.describe(), std, f"{where} [{f.key}]"))
    head = ("parameter", "init rule", "std", "declared at")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    out = ["", fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]
    out.append(f"{default:,} parameter{'s' if default != 1 else ''} keep PyTorch's default initialisation")
    return out
