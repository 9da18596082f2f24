"""Export a spec's model to `torch.export` (.pt2) and ONNX (.onnx), with its free dims dynamic.

Every free dim of the model's inputs (`B`, `T`, `H`) becomes a `torch.export.Dim` of that name, one object
per name (so [B, N, N] edges keep both N equal), with the range the spec states (`ensure T <= n_ctx`:
max=n_ctx, read from `meta.dim_bounds`); a dim whose range admits a single size stays static. The example
inputs the exporters trace take sizes inside those ranges that satisfy the divisibility facts
(passes/ensures.sample_dims); integer inputs take small values (valid indices).

ONNX goes through torch.onnx's dynamo exporter; the file is checked with `onnx.checker` (full check) and
strict shape inference, and `verify_onnx` runs it with onnxruntime on fresh inputs of other sizes and
returns the largest deviation from the eager module. Some models cannot be exported to ONNX: a frame
average over PCA frames needs an eigendecomposition, which ONNX has no operator for.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path


class ExportError(RuntimeError):
    """The exporter refused the model; the message says why."""


def _dims(ir, sizes: dict):
    """Per input, {axis: Dim} for its free dims, and the example sizes."""
    from torch.export import Dim

    from ..passes.ensures import sample_dims

    sizes = sample_dims(ir, sizes, default=32)
    made: dict[str, object] = {}
    shapes = []
    for mi in ir.meta.inputs:
        spec = {}
        for k, d in enumerate(mi.type.shape):
            if d.is_const:
                continue
            name = d.symbol_name() or str(d)
            lo, hi = ir.meta.dim_bounds.get(name, [1, None])
            lo = max(lo, 2)                              # torch.export specialises sizes 0 and 1
            if (lo, hi) != (2, None) and name not in made:
                lo = _past_ones(ir, name, lo, hi, sizes)     # ... of the tensors inside too
                sizes[name] = max(sizes[name], lo)
            if hi is not None and hi <= lo:
                continue                                 # one size only: static
            if hi is None and lo == 2:                   # no stated range: the smallest the layers take is
                spec[k] = Dim.AUTO                       # torch.export's to find (a strided stack's minimum)
                continue
            if name not in made:
                made[name] = Dim(name, min=lo, max=hi) if hi is not None else Dim(name, min=lo)
            spec[k] = made[name]
        shapes.append(spec or None)
    return shapes, sizes


def _past_ones(ir, name: str, lo: int, hi, sizes: dict, limit: int = 4096) -> int:
    """The smallest size of free dim `name` from `lo` at which no size inside the graph is 0 or 1 (the
    others at their example sizes). torch.export specialises such sizes, so a stated range that reaches
    them (`ensure H >= 32` where ConvNeXt's last map is then 1 x 1) is refused as a violated constraint;
    the exported program takes the range from here. `lo` itself when no such size depends on `name`."""
    from ..dims import Dim

    exprs = {d for n in ir.nodes() for t in n.outputs for d in getattr(t, "shape", ())
             if not d.is_const and name in {str(x) for x in d.free_symbols()}}
    env = {k: Dim.const(v) for k, v in sizes.items()}

    def wide(v: int) -> bool:
        env[name] = Dim.const(v)
        return all(not (r := d.subs(env)).is_const or r.value >= 2 for d in exprs)

    top = lo + limit if hi is None else min(hi, lo + limit)
    if wide(lo):
        return lo
    step = 1                 # sizes grow with the input's (strided windows, products): double, then halve
    while lo + step <= top and not wide(lo + step):
        step *= 2
    if lo + step > top:
        return lo
    a, b = lo + step // 2, lo + step              # not wide at a (or a == lo), wide at b
    while b - a > 1:
        mid = (a + b) // 2
        a, b = (a, mid) if wide(mid) else (mid, b)
    return b


def example_inputs(ir, sizes: dict, generator=None):
    import torch

    out = []
    for mi in ir.meta.inputs:
        shape = [d.value if d.is_const else sizes[d.symbol_name() or str(d)] for d in mi.type.shape]
        if mi.type.is_float:
            out.append(torch.randn(*shape, generator=generator, dtype=getattr(torch, mi.type.dtype)))
        elif mi.type.dtype == "bool":
            out.append(torch.randint(0, 2, shape, generator=generator).bool())
        else:
            out.append(torch.randint(0, 2, shape, generator=generator, dtype=getattr(torch, mi.type.dtype)))
    return out


def export_program(model, ir, sizes: dict | None = None):
    """The model as a torch.export ExportedProgram with its free dims dynamic."""
    import torch

    dyn, sizes = _dims(ir, sizes or {})
    xs = example_inputs(ir, sizes, torch.Generator().manual_seed(0))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _unless_unprovable(lambda d: torch.export.export(model, tuple(xs), dynamic_shapes=d), dyn)
    except Exception as e:                # noqa: BLE001 - the exporter's reasons are many; say them
        raise ExportError(f"torch.export: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from None


def _unless_unprovable(run, dyn: list):
    """`run(dynamic_shapes)`; when torch.export cannot prove its own guards over a stated range ("Constraints
    violated": ConvNeXt's layer scale gives it `1 % (96 * (W // 4)) != 0`), again with every free dim left
    to it (Dim.AUTO): the program's range_constraints then say what it takes."""
    try:
        return run(tuple(dyn))
    except Exception as e:                # noqa: BLE001
        if "Constraints violated" not in str(e):
            raise
    from torch.export import Dim

    return run(tuple({k: Dim.AUTO for k in spec} if spec else None for spec in dyn))


def save_torch_export(model, ir, path: Path, sizes: dict | None = None) -> None:
    import torch

    torch.export.save(export_program(model, ir, sizes), str(path))


def onnx_bytes(model, ir, sizes: dict | None = None, opset: int | None = None) -> bytes:
    """The model as ONNX (opset `opset`, default the exporter's), checked by onnx.checker and strict shape
    inference."""
    import torch

    dyn, sizes = _dims(ir, sizes or {})
    xs = example_inputs(ir, sizes, torch.Generator().manual_seed(0))
    names = [mi.name for mi in ir.meta.inputs]
    outs = [o.name for o in ir.meta.outputs]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            kw = {"opset_version": opset} if opset else {}
            prog = _unless_unprovable(lambda d: torch.onnx.export(
                model, tuple(xs), input_names=names, output_names=outs, dynamic_shapes=d, dynamo=True, **kw), dyn)
            data = prog.model_proto.SerializeToString()
    except Exception as e:                # noqa: BLE001
        raise ExportError(f"ONNX: {_reason(e)}") from None
    import onnx

    mo = onnx.load_from_string(data)
    try:
        onnx.checker.check_model(mo, full_check=True)
        onnx.shape_inference.infer_shapes(mo, check_type=True, strict_mode=True)
    except Exception as e:                # noqa: BLE001
        raise ExportError(f"ONNX checker: {str(e).strip().splitlines()[0][:300]}") from None
    return data


def _reason(e: BaseException) -> str:
    """The exporter's reason in one line: the operators it has no ONNX translation for, else its message
    (without terminal colours)."""
    import re

    text = ""
    while e is not None and len(text) < 100_000:
        text += " " + str(e)
        e = e.__cause__ or e.__context__
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    ops = sorted(set(re.findall(r"Error when translating node %\w+ : .*?target=torch\.ops\.aten\.([A-Za-z_0-9]+)",
                                text)))
    if ops:
        return f"no ONNX translation of the operator {', '.join(ops)}"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "the exporter failed")
    return first[:300]


def verify_onnx(data: bytes, model, ir, sizes: dict | None = None) -> float:
    """Run the ONNX model with onnxruntime on inputs of other sizes than the traced ones; the largest
    |onnx − eager| over its outputs."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from ..passes.ensures import sample_dims

    sizes = sample_dims(ir, sizes, default=24)
    xs = example_inputs(ir, sizes, torch.Generator().manual_seed(1))
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    feeds = {i.name: x.numpy() for i, x in zip(sess.get_inputs(), xs)}
    got = sess.run(None, feeds)
    with torch.no_grad():
        want = model(*xs)
    want = want if isinstance(want, tuple) else (want,)
    return max(float(np.abs(g - w.numpy()).max()) if g.size else 0.0 for g, w in zip(got, want))
