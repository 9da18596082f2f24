"""The `nndsl` command line: check, summary, compile, draw, export, fmt, lsp, explain.

Exit codes: 0 clean, 1 the spec (or an input or output file) has errors, 2 the command line is wrong.
Every error about a file is a coded diagnostic; outputs are written atomically (nothing is left behind
on failure)."""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import typer

from .compiler import CheckResult, check as run_check
from .diagnostics import CODES, Diagnostic, explain as explain_code, render_all
from .diagnostics.render import diagnostic_json, visible
from .limits import DEFAULT, Limits

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="nndsl: declare neural networks in .nn files; check, summarise, draw and compile them.")

DimOpt = typer.Option(None, "--dim", "-d", help="Bind a parameter or free dim: NAME=VALUE (repeatable).")
ModelOpt = typer.Option(None, "--model", "-m", help="The model to use when the file defines several.")
MaxNodesOpt = typer.Option(None, "--max-nodes", help=f"Node limit after unrolling (default {DEFAULT.nodes:,}).")
MaxFileOpt = typer.Option(None, "--max-file-size",
                          help=f"Bytes a spec file may have (default {DEFAULT.file_bytes:,}).")
MaxParamsOpt = typer.Option(None, "--max-params", help=f"Parameters a model may have (default {DEFAULT.params:,}).")
ImportRootOpt = typer.Option(None, "--import-root", help="Confine imports to this directory (untrusted specs).")


def _usage(msg: str):
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _dims(values: Optional[List[str]]) -> dict:
    out: dict[str, str] = {}
    for v in values or []:
        if "=" not in v:
            _usage(f"--dim expects NAME=VALUE, got `{v}`")
        k, val = v.split("=", 1)
        k = k.strip()
        if not k.isidentifier():
            _usage(f"--dim needs a name before `=`, got `{v}`")
        if k in out:
            _usage(f"--dim {k} is given twice")
        out[k] = val.strip()
    return out


def _limits(max_nodes=None, max_file_size=None, max_params=None) -> Limits:
    for name, v in (("--max-nodes", max_nodes), ("--max-file-size", max_file_size), ("--max-params", max_params)):
        if v is not None and v <= 0:
            _usage(f"{name} must be positive")
    return DEFAULT.with_(nodes=max_nodes, file_bytes=max_file_size,
                         total_bytes=max(DEFAULT.total_bytes, 4 * max_file_size) if max_file_size else None,
                         params=max_params)


def _color() -> bool:
    return sys.stderr.isatty()


def _report(res: CheckResult) -> None:
    if res.diagnostics or res.omitted:
        typer.echo(render_all(res.diagnostics, res.sources, color=_color(), omitted=res.omitted), err=True, nl=False)


def _fail(code: str, message: str, help: str | None = None, sources: dict | None = None):
    """A diagnostic about the command's own files (an output path, a format), then exit 1."""
    d = Diagnostic(code=code, message=message, help=help)
    typer.echo(render_all([d], sources or {}, color=_color()), err=True, nl=False)
    raise typer.Exit(1)


def _load(file: Path, model, dim, limits: Limits, import_root, signal: bool = False) -> CheckResult:
    res = run_check(file, model=model, dims=_dims(dim), limits=limits, import_root=import_root, signal=signal)
    _report(res)
    if not res.ok:
        raise typer.Exit(1)
    return res


def write_output(out: Path, data: bytes) -> None:
    """Write `data` to `out` atomically: into a temporary file beside it, then renamed over it. Any
    failure is a diagnostic (E0401) and leaves no file behind."""
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        _fail("E0401", f"cannot write `{out}`: it is a directory", help="give a file name, e.g. -o model.py")
    if not parent.is_dir():
        _fail("E0401", f"cannot write `{out}`: the directory `{parent}` does not exist",
              help="create the directory first")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".nndsl-", dir=parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # the mode a plain open() would give, not mkstemp's 0600
        os.replace(tmp, out)
        tmp = None
    except OSError as e:
        _fail("E0401", f"cannot write `{out}`: {(e.strerror or str(e)).lower()}")
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


@app.command()
def check(files: List[Path] = typer.Argument(..., help="Spec files to check."),
          model: Optional[str] = ModelOpt, dim: Optional[List[str]] = DimOpt,
          format: str = typer.Option("text", "--format", help="text or json"),
          max_nodes: Optional[int] = MaxNodesOpt, max_file_size: Optional[int] = MaxFileOpt,
          max_params: Optional[int] = MaxParamsOpt, import_root: Optional[Path] = ImportRootOpt,
          signal: bool = typer.Option(False, "--signal", help="Predict the signal at init: per layer the "
                                      "pre-activation second moment q and the gradient factor chi, with warnings."),
          verify_equivariance: bool = typer.Option(False, "--verify-equivariance", help="Also test every "
                                                   "symmetry claim on the compiled model (float64, sampled "
                                                   "inputs and group elements).")):
    """Check specs: syntax, names, shapes, ensures; every model of a file unless -m picks one. Exit 0
    when clean, 1 on errors."""
    if format not in ("text", "json"):
        _usage("--format is text or json")
    from .backends.summary import fmt_count, totals

    dims = _dims(dim)
    limits = _limits(max_nodes, max_file_size, max_params)
    worst = 0
    entries = []

    def results():
        for f in files:
            res = run_check(f, model=model, dims=dims, limits=limits, import_root=import_root, signal=signal)
            if model is None and len(res.models) > 1:  # several models: check each one
                for name in res.models:
                    yield f, run_check(f, model=name, dims=dims, limits=limits, import_root=import_root,
                                       signal=signal)
            else:
                yield f, res

    for f, res in results():
        if format == "json":
            entry = {"file": visible(str(f)), "ok": res.ok, "model": res.ir.meta.model if res.ir is not None else None,
                     "diagnostics": [diagnostic_json(d) for d in res.diagnostics], "omitted": dict(res.omitted)}
            if res.ok:
                entry["params"] = totals(res.ir)["total_params"]
                if signal and res.ir.signal is not None:
                    from .backends.summary import signal_json

                    entry["signal"] = signal_json(res.ir)
            entries.append(entry)
        else:
            _report(res)
        if not res.ok:
            worst = 1
            continue
        if format == "text":
            ir = res.ir
            t = totals(ir)
            typer.echo(f"ok: {visible(str(f))} (model {ir.meta.model})")
            for i in ir.meta.inputs:
                typer.echo(f"  input   {i.name}: {i.type.describe()}")
            for o in ir.meta.outputs:
                ty = ir.node(o.node).outputs[o.port]
                typer.echo(f"  output  {o.name}: {ty.describe()}")
            typer.echo(f"  params  {fmt_count(t['total_params'])}")
            if signal and ir.signal is not None:
                from .backends.summary import signal_lines

                for line in signal_lines(ir):
                    typer.echo("  " + line if line else line)
        if verify_equivariance and res.ir.meta.claims:
            from .symmetry.verify import TooLarge, verify

            try:
                checked = verify(res.ir)
            except TooLarge as e:
                d = Diagnostic(code="E0112", message=str(e), span=res.ir.meta.instances[""].span,
                               help="bind smaller dims with --dim to verify")
                typer.echo(render_all([d], res.sources, color=_color()), err=True, nl=False)
                worst = 1
                continue
            for v in checked:
                text = "inside a block: not verified" if v.samples == 0 else \
                    f"max |f(g·x) - g·f(x)| = {v.error:.2e} over {v.samples} group elements"
                if format == "text":
                    typer.echo(f"  verify  {visible(v.tensor)} {v.claim} under {visible(v.group)}: {text}")
                if v.samples and not v.error < 1e-5:
                    worst = 1
                    if format == "text":
                        typer.echo(f"  error: the claim fails numerically ({v.error:.2e} > 1e-5)", err=True)
    if format == "json":
        typer.echo(json.dumps({"version": 1, "ok": worst == 0, "files": entries}, indent=2))
    raise typer.Exit(worst)


@app.command()
def summary(file: Path, model: Optional[str] = ModelOpt, dim: Optional[List[str]] = DimOpt,
            json_: bool = typer.Option(False, "--json", help="Print JSON."),
            max_nodes: Optional[int] = MaxNodesOpt, max_file_size: Optional[int] = MaxFileOpt,
            max_params: Optional[int] = MaxParamsOpt, import_root: Optional[Path] = ImportRootOpt,
            symmetries: bool = typer.Option(False, "--symmetries", help="List the parameter-space symmetries "
                                            "of ReLU layers (unit permutations and positive rescaling).")):
    """Per-layer table: name, op, output shape, parameters, FLOPs, the predicted signal at init (q, chi);
    with totals."""
    from .backends.summary import fmt_count, init_lines, sparsity_lines, table_lines, to_dict, totals

    res = _load(file, model, dim, _limits(max_nodes, max_file_size, max_params), import_root, signal=True)
    ir = res.ir
    if json_:
        typer.echo(json.dumps(to_dict(ir), indent=2))
        return
    typer.echo(f"{ir.meta.model}  ({visible(str(file))})")
    typer.echo("\n".join(table_lines(ir)))
    t = totals(ir)
    typer.echo(f"total_params:     {fmt_count(t['total_params'])}")
    typer.echo(f"trainable_params: {fmt_count(t['trainable_params'])}")
    if t["nonzero_params"] != t["total_params"]:
        typer.echo(f"nonzero_params:   {fmt_count(t['nonzero_params'])}")
    typer.echo(f"buffers:          {fmt_count(t['buffers'])}")
    typer.echo(f"flops:            {fmt_count(t['flops'])}"
               + ("" if isinstance(t["flops"], int) else "   (bind free dims with --dim to get a number)"))
    for line in sparsity_lines(ir) + init_lines(ir):
        typer.echo(line)
    if symmetries:
        from .symmetry.relu import hidden_symmetries

        found = hidden_symmetries(ir)
        typer.echo("")
        typer.echo("parameter-space symmetries (the function is unchanged; nndsl.symmetry.relu.canonicalize picks "
                   "one representative):" if found else "no hidden ReLU symmetries (no weighted layer reaches the "
                   "next only through relu or leaky_relu)")
        for h in found:
            typer.echo(f"  {visible(h.describe())}")


@app.command()
def compile(file: Path, model: Optional[str] = ModelOpt, dim: Optional[List[str]] = DimOpt,
            output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the Python source here."),
            max_nodes: Optional[int] = MaxNodesOpt, max_file_size: Optional[int] = MaxFileOpt,
            max_params: Optional[int] = MaxParamsOpt, import_root: Optional[Path] = ImportRootOpt):
    """Write standalone PyTorch source (one nn.Module class per block)."""
    from .backends.torch_codegen import generate
    from .diagnostics import Abort

    res = _load(file, model, dim, _limits(max_nodes, max_file_size, max_params), import_root)
    try:
        src, _cls = generate(res.ir)
    except Abort as e:
        typer.echo(render_all([e.diagnostic], res.sources, color=_color()), err=True, nl=False)
        raise typer.Exit(1)
    if output is None:
        typer.echo(src, nl=False)
    else:
        write_output(output, src.encode("utf-8"))
        typer.echo(f"wrote {visible(str(output))}", err=True)


@app.command()
def lsuv(file: Path, batch: Path = typer.Option(..., "--batch", "-b", help="Calibration batch: .npy, or .pt "
                                                 "(a tensor, or a list of tensors for several inputs)."),
         output: Path = typer.Option(..., "--output", "-o", help="Write the state dict here (.pt)."),
         model: Optional[str] = ModelOpt, dim: Optional[List[str]] = DimOpt,
         seed: int = typer.Option(0, "--seed", help="Seed of the spec's init and of the orthonormal pre-init."),
         tol: float = typer.Option(0.1, "--tol", help="Stop when |Var(output) - 1| < tol."),
         max_iter: int = typer.Option(10, "--max-iter", min=1, help="Rescalings per layer at most."),
         max_nodes: Optional[int] = MaxNodesOpt, max_file_size: Optional[int] = MaxFileOpt,
         max_params: Optional[int] = MaxParamsOpt, import_root: Optional[Path] = ImportRootOpt):
    """Initialise the model with LSUV on a calibration batch and save its state dict: orthonormal
    weights, then each layer rescaled until its output variance is within --tol of 1."""
    import io

    import torch

    from .backends.torch_module import build_module
    from .init.layerwise import lsuv as run

    if not tol > 0:
        _usage("--tol must be positive")
    res = _load(file, model, dim, _limits(max_nodes, max_file_size, max_params), import_root)
    args = _read_batch(batch, res)
    net = build_module(res.ir, seed)
    bar = typer.progressbar(length=1, label="LSUV", file=sys.stderr)
    fits = []

    def progress(i, n, fit):
        if bar.length != n:
            bar.length = n
        bar.update(1)
        fits.append(fit)

    with bar:
        try:
            run(net, args, tol=tol, max_iter=max_iter, seed=seed, progress=progress)
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            _fail("E0404", f"the batch does not run through the model: {str(e).splitlines()[0][:300]}",
                  help="its shape and dtype must fit the model's inputs")
    if not sys.stderr.isatty():
        typer.echo("", err=True)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    write_output(output, buf.getvalue())
    width = max((len(f.name) for f in fits), default=5)
    typer.echo(f"{'layer':<{width}}  {'before':>8}  {'after':>8}  rounds", err=True)
    for f in fits:
        typer.echo(f"{visible(f.name):<{width}}  {f.before:8.4f}  {f.after:8.4f}  {f.rounds:>6}"
                   + (f"  ({f.skipped})" if f.skipped else ""), err=True)
    typer.echo(f"wrote {visible(str(output))}", err=True)


@app.command()
def project(file: Path, weights: Path = typer.Option(..., "--weights", "-w", help="The dense checkpoint: a "
                                                     "state dict (.pt) of the same network without structure."),
            output: Path = typer.Option(..., "--output", "-o", help="Write the structured state dict here (.pt)."),
            model: Optional[str] = ModelOpt, dim: Optional[List[str]] = DimOpt,
            seed: int = typer.Option(0, "--seed", help="Build seed (masks drawn at random and files are kept)."),
            max_nodes: Optional[int] = MaxNodesOpt, max_file_size: Optional[int] = MaxFileOpt,
            max_params: Optional[int] = MaxParamsOpt, import_root: Optional[Path] = ImportRootOpt):
    """Load a dense checkpoint into the spec's sparse and structured layers: each weight is projected onto
    its structure (Monarch, block, N:M, low rank, masks: the closest in Frobenius norm), the rest copied."""
    import io

    import torch

    from .backends.torch_module import build_module
    from .sparsity.project import load_dense

    res = _load(file, model, dim, _limits(max_nodes, max_file_size, max_params), import_root)
    if weights.suffix != ".pt":
        _fail("E0405", f"cannot read `{visible(str(weights))}`: the dense checkpoint is a .pt state dict")
    sd = _read_tensors(weights, "E0405", lambda: torch.load(weights, map_location="cpu", weights_only=True))
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        _fail("E0405", "the dense checkpoint must be a state dict: names -> tensors")
    net = build_module(res.ir, seed)
    try:
        errors = load_dense(net, sd)
    except (KeyError, ValueError, RuntimeError) as e:
        _fail("E0405", f"the checkpoint does not fit `{res.ir.meta.model}`: {str(e).splitlines()[0][:300]}",
              help="it must be the state dict of the same network with dense weights")
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    write_output(output, buf.getvalue())
    width = max((len(n) for n in errors), default=5)
    typer.echo(f"{'layer':<{width}}  relative error of the projection", err=True)
    for name, err in errors.items():
        typer.echo(f"{visible(name):<{width}}  {err:.4g}", err=True)
    typer.echo(f"wrote {visible(str(output))}", err=True)


def _read_tensors(path: Path, code: str, read):
    """`read()` of a tensor file the user names (no pickles run), its failures as diagnostic `code`."""
    try:
        return read()
    except (OSError, ValueError, RuntimeError, EOFError, ImportError) as e:
        _fail(code, f"cannot read `{visible(str(path))}`: "
              f"{str(e).splitlines()[0][:200] if str(e) else type(e).__name__}")
    except Exception as e:  # unpickling refused by weights_only, a corrupt archive
        _fail(code, f"cannot read `{visible(str(path))}`: {type(e).__name__}")


def _read_batch(path: Path, res: CheckResult):
    """The calibration batch as a tuple of tensors, one per model input; never unpickles anything."""
    import torch

    n_in = len(res.ir.meta.inputs)
    if path.suffix not in (".npy", ".pt"):
        _fail("E0404", f"cannot read `{visible(str(path))}`: the batch is a .npy or .pt file")
    def read():
        if path.suffix == ".npy":
            import numpy as np

            return [torch.from_numpy(np.ascontiguousarray(np.load(path, allow_pickle=False)))]
        data = torch.load(path, map_location="cpu", weights_only=True)
        return list(data) if isinstance(data, (list, tuple)) else [data]

    got = _read_tensors(path, "E0404", read)
    if not all(isinstance(t, torch.Tensor) for t in got):
        _fail("E0404", "the batch must hold tensors only")
    if len(got) != n_in:
        _fail("E0404", f"the model has {n_in} input{'s' if n_in != 1 else ''}, the batch holds {len(got)} tensor"
              f"{'s' if len(got) != 1 else ''}")
    for t, mi in zip(got, res.ir.meta.inputs):
        if t.dim() != len(mi.type.shape):
            _fail("E0404", f"input `{mi.name}` has rank {len(mi.type.shape)}, the batch's tensor has "
                  f"{t.dim()} axes {list(t.shape)}")
        if t.is_floating_point() != mi.type.is_float:
            _fail("E0404", f"input `{mi.name}` is {mi.type.dtype}, the batch's tensor is {t.dtype}")
    return tuple(t.float() if t.is_floating_point() else t for t in got)


@app.command()
def draw(file: Path, model: Optional[str] = ModelOpt, dim: Optional[List[str]] = DimOpt,
         output: Path = typer.Option(None, "--output", "-o", help="OUT.svg, .png, .pdf or .dot"),
         style: str = typer.Option("circuit", "--style", help="circuit (one wire per axis) or graph (dataflow)."),
         depth: int = typer.Option(2, "--depth", min=0, help="Levels of block instances drawn as fences; the "
                                   "next level is drawn as boxes."),
         expand: Optional[List[str]] = typer.Option(None, "--expand", help="Open this instance (path or name) "
                                                    "whatever the depth; repeatable."),
         detail: bool = typer.Option(False, "--detail", help="Convolutions and pools as window wedges."),
         sizes: bool = typer.Option(True, "--sizes/--no-sizes", help="Show known sizes on the wires (D=768)."),
         annotate: Optional[str] = typer.Option(None, "--annotate", help="Badges from the facets: a comma list "
                                                "of init, sparsity, symmetry."),
         fmt_opt: Optional[str] = typer.Option(None, "--format", help="svg, png, pdf or dot (default: by the "
                                               "output's extension)."),
         max_draw_nodes: Optional[int] = typer.Option(None, "--max-draw-nodes",
                                                      help="Boxes a diagram may have; larger ones collapse blocks."),
         max_nodes: Optional[int] = MaxNodesOpt, max_file_size: Optional[int] = MaxFileOpt,
         import_root: Optional[Path] = ImportRootOpt):
    """Draw the model: a neural circuit diagram (default) or the dataflow graph."""
    from .backends.draw import TooLarge as GraphTooLarge
    from .backends.ncd import BADGES, Options
    from .backends.ncd_dot import FORMATS, Drawing, TooLarge

    out = output or file.with_suffix(".svg")
    fmt = (fmt_opt or out.suffix).lower().lstrip(".")
    if fmt not in FORMATS:
        _fail("E0402", f"cannot draw to `{out}`: unknown format `{fmt_opt or out.suffix or '(none)'}`",
              help="use .svg, .png, .pdf or .dot")
    if style not in ("circuit", "graph"):
        _usage(f"unknown --style `{style[:20]}`; use circuit or graph")
    notes = tuple(a.strip() for a in (annotate or "").split(",") if a.strip())
    for a in notes:
        if a not in BADGES:
            _usage(f"unknown --annotate `{a[:20]}`; use {', '.join(BADGES)}")
    res = _load(file, model, dim, _limits(max_nodes, max_file_size), import_root)
    opt = Options(depth=depth, expand=tuple(expand or ()), detail=detail, sizes=sizes, annotate=notes)
    limit = max_draw_nodes if max_draw_nodes is not None else (DEFAULT.draw_items if style == "circuit"
                                                              else DEFAULT.draw_nodes)
    try:
        data = Drawing(res.ir, style, opt, max_items=limit, max_nodes=limit).render(fmt)
    except (TooLarge, GraphTooLarge) as e:
        d = Diagnostic(code="E0112", message=f"cannot draw `{res.ir.meta.model}`: {e}",
                       span=_model_span(res), label="this model",
                       help="draw a smaller model, or raise --max-draw-nodes (Graphviz may then take minutes)")
        typer.echo(render_all([d], res.sources, color=_color()), err=True, nl=False)
        raise typer.Exit(1)
    except RuntimeError as e:
        _fail("E0403", f"cannot render `{out}`: {e}", help="apt-get install graphviz, or write a .dot file")
    write_output(out, data)
    typer.echo(f"wrote {visible(str(out))}", err=True)


def _model_span(res: CheckResult):
    inst = res.ir.meta.instances.get("") if res.ir is not None else None
    return inst.span if inst is not None else None


@app.command()
def export(file: Path, onnx: Optional[Path] = typer.Option(None, "--onnx", help="Write the model as ONNX here "
                                                           "(free dims as dynamic axes)."),
           torch_export: Optional[Path] = typer.Option(None, "--torch-export", help="Write a torch.export program "
                                                       "here (.pt2; free dims as Dims with the spec's bounds)."),
           model: Optional[str] = ModelOpt, dim: Optional[List[str]] = DimOpt,
           seed: int = typer.Option(0, "--seed", help="Seed of the spec's init."),
           weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Load this state dict (.pt) first."),
           opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset (default: the exporter's)."),
           max_nodes: Optional[int] = MaxNodesOpt, max_file_size: Optional[int] = MaxFileOpt,
           max_params: Optional[int] = MaxParamsOpt, import_root: Optional[Path] = ImportRootOpt):
    """Export the model to ONNX (checked with onnx.checker and strict shape inference, then run with
    onnxruntime against the eager module) and/or torch.export, its free dims dynamic."""
    from .backends.export import ExportError, export_program, onnx_bytes, verify_onnx
    from .backends.torch_module import build_module
    from .limits import available_memory
    from .passes.validate import model_bytes

    if onnx is None and torch_export is None:
        _usage("give --onnx OUT.onnx and/or --torch-export OUT.pt2")
    res = _load(file, model, dim, _limits(max_nodes, max_file_size, max_params), import_root)
    need, _ = model_bytes(res.ir)
    if need * 4 > available_memory():          # the module, the traced copy and the serialised weights
        _fail("E0406", f"exporting `{res.ir.meta.model}` needs about {need * 4 / 2 ** 30:.1f} GiB, more than "
              "this machine has available", help="bind smaller dims or parameters with --dim")
    net = build_module(res.ir, seed).eval()
    if weights is not None:
        import torch

        sd = _read_tensors(weights, "E0405", lambda: torch.load(weights, map_location="cpu", weights_only=True))
        if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
            _fail("E0405", "the checkpoint must be a state dict: names -> tensors")
        try:
            net.load_state_dict(sd, strict=True)
        except (KeyError, ValueError, RuntimeError) as e:
            _fail("E0405", f"the checkpoint does not fit `{res.ir.meta.model}`: {str(e).splitlines()[0][:300]}")
    try:
        if torch_export is not None:
            import io

            import torch

            buf = io.BytesIO()
            torch.export.save(export_program(net, res.ir), buf)
            write_output(torch_export, buf.getvalue())
            typer.echo(f"wrote {visible(str(torch_export))}", err=True)
        if onnx is not None:
            data = onnx_bytes(net, res.ir, opset=opset)
            err = verify_onnx(data, net, res.ir)
            write_output(onnx, data)
            typer.echo(f"wrote {visible(str(onnx))} (onnxruntime vs eager: max |diff| = {err:.2e})", err=True)
    except ExportError as e:
        _fail("E0406", f"cannot export `{res.ir.meta.model}`: {e}",
              help="docs/export.md lists what each exporter takes")
    except ImportError as e:
        _fail("E0406", f"cannot export: {e.name or 'a package'} is not installed",
              help="pip install onnx onnxruntime onnxscript")


@app.command()
def fmt(files: List[Path] = typer.Argument(..., help="Spec files to format in place (`-`: standard input to "
                                          "standard output)."),
        check_only: bool = typer.Option(False, "--check", help="Change nothing; exit 1 if a file is not "
                                        "formatted (for CI and pre-commit hooks)."),
        max_file_size: Optional[int] = MaxFileOpt):
    """Format specs: the canonical layout, comments kept, meaning unchanged. Exit 0 when every file is
    (or now is) formatted, 1 when --check finds one that is not or a file does not parse."""
    from .loader import SourceError, read_source
    from .syntax.fmt import FormatError, format_text

    limits = _limits(None, max_file_size, None)
    worst = 0
    for f in files:
        name = "<stdin>" if str(f) == "-" else str(f)
        try:
            text = sys.stdin.read(limits.file_bytes + 1) if str(f) == "-" else read_source(f, limits.file_bytes)
            if len(text.encode("utf-8", "surrogatepass")) > limits.file_bytes:
                raise SourceError(f"it is larger than {limits.file_bytes:,} bytes")
        except SourceError as e:
            d = Diagnostic(code="E0112" if "limit" in str(e) or "larger" in str(e) else "E0108",
                           message=f"cannot read `{visible(name)}`: {e}")
            typer.echo(render_all([d], {}, color=_color()), err=True, nl=False)
            worst = 1
            continue
        try:
            out = format_text(text, name)
        except FormatError as e:
            typer.echo(render_all(e.diagnostics, {name: text}, color=_color()), err=True, nl=False)
            worst = 1
            continue
        if str(f) == "-":
            if check_only:
                worst = max(worst, int(out != text))
            else:
                sys.stdout.write(out)
            continue
        if out == text:
            continue
        if check_only:
            typer.echo(f"would reformat {visible(name)}", err=True)
            worst = 1
            continue
        write_output(f, out.encode("utf-8"))
        typer.echo(f"reformatted {visible(name)}", err=True)
    raise typer.Exit(worst)


@app.command()
def lsp():
    """Run the language server on standard input and output (for editors: diagnostics, hover, go to
    definition, completion, symbols, formatting; docs/editors.md)."""
    try:
        from .lsp import serve
    except ImportError as e:
        _usage(f"the language server needs pygls: pip install pygls ({e.name} is missing)")
    serve()


@app.command()
def explain(code: str = typer.Argument(..., help="A diagnostic code, e.g. E0201.")):
    """Print the long explanation of a diagnostic code."""
    text = explain_code(code)
    if text is None:
        _usage(f"no diagnostic code `{code[:20]}`; codes are {', '.join(CODES)}")
    typer.echo(text, nl=False)


def main() -> None:
    # whatever the terminal's encoding, a character it cannot show is escaped, never a crash
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):
            pass
    app()


if __name__ == "__main__":
    main()
