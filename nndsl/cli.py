"""The `nndsl` command line: check, summary, compile, draw, explain."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .compiler import CheckResult, check as run_check
from .diagnostics import CODES, explain as explain_code, render_all, to_json

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="nndsl: declare neural networks in .nn files; check, summarise, draw and compile them.")

DimOpt = typer.Option(None, "--dim", "-d", help="Bind a parameter or free dim: NAME=VALUE (repeatable).")
ModelOpt = typer.Option(None, "--model", "-m", help="The model to use when the file defines several.")


def _dims(values: Optional[List[str]]) -> dict:
    out = {}
    for v in values or []:
        if "=" not in v:
            typer.echo(f"error: --dim expects NAME=VALUE, got `{v}`", err=True)
            raise typer.Exit(2)
        k, val = v.split("=", 1)
        out[k.strip()] = val.strip()
    return out


def _color() -> bool:
    return sys.stderr.isatty()


def _report(res: CheckResult, fmt: str = "text") -> None:
    if fmt == "json":
        return
    if res.diagnostics:
        typer.echo(render_all(res.diagnostics, res.sources, color=_color(), omitted=res.omitted), err=True, nl=False)


def _load(file: Path, model: Optional[str], dim: Optional[List[str]], fmt: str = "text") -> CheckResult:
    if not file.exists():
        typer.echo(f"error: no such file: {file}", err=True)
        raise typer.Exit(2)
    res = run_check(file, model=model, dims=_dims(dim))
    _report(res, fmt)
    if not res.ok:
        raise typer.Exit(1)
    return res


@app.command()
def check(files: List[Path] = typer.Argument(..., help="Spec files to check."),
          model: Optional[str] = ModelOpt, dim: Optional[List[str]] = DimOpt,
          format: str = typer.Option("text", "--format", help="text or json")):
    """Check specs: syntax, names, shapes, ensures. Exit 0 when clean, 1 on errors."""
    if format not in ("text", "json"):
        typer.echo("error: --format is text or json", err=True)
        raise typer.Exit(2)
    from .backends.summary import fmt_count, totals

    worst = 0
    all_json = []
    for f in files:
        if not f.exists():
            typer.echo(f"error: no such file: {f}", err=True)
            raise typer.Exit(2)
        res = run_check(f, model=model, dims=_dims(dim))
        if format == "json":
            all_json.append({"file": str(f), "ok": res.ok, "diagnostics": json.loads(to_json(res.diagnostics))})
        else:
            _report(res)
        if not res.ok:
            worst = 1
            continue
        if format == "text":
            ir = res.ir
            t = totals(ir)
            typer.echo(f"ok: {f} (model {ir.meta.model})")
            for i in ir.meta.inputs:
                typer.echo(f"  input   {i.name}: {i.type.describe()}")
            for o in ir.meta.outputs:
                ty = ir.node(o.node).outputs[o.port]
                typer.echo(f"  output  {o.name}: {ty.describe()}")
            typer.echo(f"  params  {fmt_count(t['total_params'])}")
    if format == "json":
        typer.echo(json.dumps(all_json if len(all_json) > 1 else all_json[0], indent=2))
    raise typer.Exit(worst)


@app.command()
def summary(file: Path, model: Optional[str] = ModelOpt, dim: Optional[List[str]] = DimOpt,
            json_: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Per-layer table: name, op, output shape, parameters, FLOPs; with totals."""
    from .backends.summary import fmt_count, rows, to_dict, totals

    res = _load(file, model, dim)
    ir = res.ir
    if json_:
        typer.echo(json.dumps(to_dict(ir), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{ir.meta.model}  ({file})", show_lines=False)
    for col, just in (("layer", "left"), ("op", "left"), ("output shape", "left"), ("params", "right"),
                      ("FLOPs", "right")):
        table.add_column(col, justify=just)
    for r in rows(ir):
        table.add_row(r.name, r.op, r.shape, fmt_count(r.params) if r.params else "",
                      fmt_count(r.flops.value) if r.flops.is_const else str(r.flops))
    t = totals(ir)
    console = Console(width=max(100, Console().width))
    console.print(table)
    console.print(f"total_params:     {fmt_count(t['total_params'])}")
    console.print(f"trainable_params: {fmt_count(t['trainable_params'])}")
    console.print(f"buffers:          {fmt_count(t['buffers'])}")
    console.print(f"flops:            {fmt_count(t['flops'])}"
                  + ("" if isinstance(t["flops"], int) else "   (bind free dims with --dim to get a number)"))


@app.command()
def compile(file: Path, model: Optional[str] = ModelOpt, dim: Optional[List[str]] = DimOpt,
            output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the Python source here.")):
    """Write standalone PyTorch source (one nn.Module class per block)."""
    from .backends.torch_codegen import generate
    from .diagnostics import Abort

    res = _load(file, model, dim)
    try:
        src, _cls = generate(res.ir)
    except Abort as e:
        typer.echo(render_all([e.diagnostic], res.sources, color=_color()), err=True, nl=False)
        raise typer.Exit(1)
    if output is None:
        typer.echo(src, nl=False)
    else:
        output.write_text(src)
        typer.echo(f"wrote {output}", err=True)


@app.command()
def draw(file: Path, model: Optional[str] = ModelOpt, dim: Optional[List[str]] = DimOpt,
         output: Path = typer.Option(None, "--output", "-o", help="OUT.svg, .png, .pdf or .dot")):
    """Render the dataflow graph through Graphviz."""
    from .backends.draw import render

    res = _load(file, model, dim)
    out = output or file.with_suffix(".svg")
    try:
        render(res.ir, str(out))
    except RuntimeError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1)
    typer.echo(f"wrote {out}", err=True)


@app.command()
def explain(code: str = typer.Argument(..., help="A diagnostic code, e.g. E0201.")):
    """Print the long explanation of a diagnostic code."""
    text = explain_code(code)
    if text is None:
        typer.echo(f"error: no diagnostic code `{code}`; codes are {', '.join(CODES)}", err=True)
        raise typer.Exit(2)
    typer.echo(text, nl=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
