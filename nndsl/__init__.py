"""nndsl: a declarative, graph-based language for neural networks.

    import nndsl
    result = nndsl.check("examples/resnet18.nn")        # diagnostics + IR, no torch import
    model = nndsl.load("examples/resnet18.nn", seed=0)  # an initialised torch.nn.Module
    source = nndsl.compile_source("examples/resnet18.nn")
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .limits import DEFAULT, Limits

if TYPE_CHECKING:
    from .compiler import CheckResult
    from .diagnostics import Diagnostic, NNDSLError

__version__ = "0.1.0"
__all__ = ["parse", "check", "load", "draw", "summary", "compile_source", "CheckResult", "Diagnostic", "NNDSLError",
           "Limits", "__version__"]

# `import nndsl` is cheap: the front end (parser, IR, passes) loads on first use (PEP 562).
_LAZY = {"CheckResult": ".compiler", "Diagnostic": ".diagnostics", "NNDSLError": ".diagnostics"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nndsl' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def parse(source: str | Path, filename: str | None = None, *, limits: Limits | None = None):
    """Parse a file path or source text into the AST (`nndsl.syntax.ast.Module`). Raises NNDSLError."""
    from .diagnostics import Diagnostic, NNDSLError
    from .loader import SourceError, file_span, read_source
    from .syntax.parser import parse_recovering

    limits = limits or DEFAULT
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.endswith(".nn")):
        name = str(source)
        try:
            text = read_source(source, limits.file_bytes)
        except SourceError as e:
            raise NNDSLError([Diagnostic(code="E0108", message=f"cannot read `{name}`: {e}",
                                         span=file_span(name))]) from None
    else:
        text, name = str(source), filename or "<string>"
        if len(text) > limits.file_bytes:
            raise NNDSLError([Diagnostic(code="E0112", message=f"the spec is larger than {limits.file_bytes:,} bytes",
                                         span=file_span(name))])
    mod, diags = parse_recovering(text, name, max_errors=limits.syntax_errors, max_nesting=limits.nesting)
    if mod is None:
        raise NNDSLError(diags, {name: text})
    return mod


def check(path: str | Path | None = None, *, source: str | None = None, model: str | None = None,
          limits: Limits | None = None, import_root: str | Path | None = None, signal: bool = False,
          **dims: Any) -> CheckResult:
    """Parse, elaborate and check a spec. Returns a CheckResult with `.diagnostics` and `.ir`.
    Keyword arguments bind model parameters and free dims (`num_classes=10`, `B=8`). `limits` bounds
    the work (nndsl.limits.Limits); `import_root` confines imports to a directory. With `signal=True`
    the signal-propagation pass runs too: every node gets a `signal` facet (predicted q, chi) and
    `.ir.signal` is the per-layer report."""
    from .compiler import check as _check

    return _check(path, source=source, model=model, dims=dims, limits=limits, import_root=import_root,
                  signal=signal)


def summary(path: str | Path | None = None, *, source: str | None = None, model: str | None = None,
            limits: Limits | None = None, import_root: str | Path | None = None, **dims: Any):
    """The per-layer summary of a model (what `nndsl summary` prints): `.rows`, `.totals`, `str()`, and a
    table in Jupyter. Raises NNDSLError for a spec with errors."""
    from .notebook import Summary

    res = check(path, source=source, model=model, limits=limits, import_root=import_root, **dims).raise_for_errors()
    return Summary(res.ir)


def compile_source(path: str | Path | None = None, *, source: str | None = None, model: str | None = None,
                   limits: Limits | None = None, import_root: str | Path | None = None, **dims: Any) -> str:
    """Standalone PyTorch source for the model (what `nndsl compile` writes). Raises only NNDSLError."""
    from .backends.torch_codegen import generate
    from .diagnostics import Abort, NNDSLError

    res = check(path, source=source, model=model, limits=limits, import_root=import_root, **dims).raise_for_errors()
    try:
        return generate(res.ir)[0]
    except Abort as e:
        raise NNDSLError([e.diagnostic], res.sources) from None


def draw(path: str | Path | None = None, *, source: str | None = None, model: str | None = None,
         style: str = "circuit", depth: int = 2, expand: tuple = (), detail: bool = False, sizes: bool = True,
         annotate: tuple = (), limits: Limits | None = None, import_root: str | Path | None = None, **dims: Any):
    """Draw a spec: a neural circuit diagram (`style="circuit"`: one wire per axis, ops on the wires they
    use) or the dataflow graph (`style="graph"`). Returns a Drawing: `.save("m.svg")` (svg, png, pdf, dot
    by extension), `.svg()`, `.dot`, `.diagram` (the layout model), and inline display in Jupyter.
    `depth` is how many levels of block instances are drawn as fences (the next level as boxes),
    `expand` names instances to open whatever the depth. Raises NNDSLError for a spec with errors."""
    from .backends.ncd import Options
    from .backends.ncd_dot import Drawing
    from .limits import DEFAULT

    lim = limits or DEFAULT
    res = check(path, source=source, model=model, limits=limits, import_root=import_root, **dims).raise_for_errors()
    opt = Options(depth=depth, expand=tuple(expand), detail=detail, sizes=sizes, annotate=tuple(annotate))
    return Drawing(res.ir, style, opt, max_items=lim.draw_items, max_nodes=lim.draw_nodes)


def load(path: str | Path | None = None, model: str | None = None, seed: int | None = None, *,
         source: str | None = None, max_bytes: int | None = None, limits: Limits | None = None,
         import_root: str | Path | None = None, **params: Any):
    """Compile the spec and return an initialised `torch.nn.Module` (same seed -> identical weights).

    Before allocating anything, the bytes of all parameters and buffers are estimated and compared
    with `max_bytes` (default: the machine's available memory); a larger model is refused with a
    diagnostic. Raises only NNDSLError."""
    from .backends.torch_module import build_module
    from .diagnostics import Abort, Diagnostic, NNDSLError
    from .limits import available_memory
    from .passes.validate import model_bytes

    res = check(path, source=source, model=model, limits=limits, import_root=import_root,
                **params).raise_for_errors()
    budget = max_bytes if max_bytes is not None else (limits.memory_bytes if limits and limits.memory_bytes
                                                      else available_memory())
    need, biggest = model_bytes(res.ir)
    if need > budget:
        raise NNDSLError([Diagnostic(
            code="E0112", message=f"building `{res.ir.meta.model}` would allocate {_gib(need)} of parameters and "
            f"buffers, more than the budget of {_gib(budget)}", span=biggest.span if biggest is not None else None,
            label="the largest layer", call_sites=res.ir.call_sites(biggest.scope) if biggest is not None else [],
            help="raise the budget with max_bytes= (--max-memory on the command line), or shrink the model")],
            res.sources)
    try:
        return build_module(res.ir, seed)
    except Abort as e:
        raise NNDSLError([e.diagnostic], res.sources) from None
    except MemoryError:
        raise NNDSLError([Diagnostic(code="E0112", message=f"out of memory while building `{res.ir.meta.model}`",
                                     span=res.ir.meta.instances[""].span,
                                     help="give load() a smaller max_bytes budget than the machine has")],
                         res.sources) from None
    except Exception as e:  # noqa: BLE001 - a spec that checks must build; if not, that is a bug in nndsl
        raise NNDSLError([Diagnostic(code="E9999", message=f"internal compiler error while building "
                                     f"`{res.ir.meta.model}`: {type(e).__name__}: {e}",
                                     span=res.ir.meta.instances[""].span,
                                     help="this is a bug in nndsl; please report it with the spec")],
                         res.sources) from None


def _gib(n: int) -> str:
    return f"{n / 2 ** 30:.1f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:.1f} MiB"
