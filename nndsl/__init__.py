"""nndsl: a declarative, graph-based language for neural networks.

    import nndsl
    result = nndsl.check("examples/resnet18.nn")        # diagnostics + IR, no torch import
    model = nndsl.load("examples/resnet18.nn", seed=0)  # an initialised torch.nn.Module
    source = nndsl.compile_source("examples/resnet18.nn")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .compiler import CheckResult
from .compiler import check as _check
from .diagnostics import Diagnostic, NNDSLError

__version__ = "0.1.0"
__all__ = ["parse", "check", "load", "compile_source", "CheckResult", "Diagnostic", "NNDSLError", "__version__"]


def parse(source: str | Path, filename: str | None = None):
    """Parse a file path or source text into the AST (`nndsl.syntax.ast.Module`). Raises NNDSLError."""
    from .diagnostics import Abort
    from .syntax import parse_text

    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.endswith(".nn")):
        path = Path(source)
        text, name = path.read_text(encoding="utf-8"), str(source)
    else:
        text, name = str(source), filename or "<string>"
    try:
        return parse_text(text, name)
    except Abort as e:
        raise NNDSLError([e.diagnostic], {name: text}) from None


def check(path: str | Path | None = None, *, source: str | None = None, model: str | None = None,
          **dims: Any) -> CheckResult:
    """Parse, elaborate and check a spec. Returns a CheckResult with `.diagnostics` and `.ir`.
    Keyword arguments bind model parameters and free dims (`num_classes=10`, `B=8`)."""
    return _check(path, source=source, model=model, dims=dims)


def compile_source(path: str | Path | None = None, *, source: str | None = None, model: str | None = None,
                   **dims: Any) -> str:
    """Standalone PyTorch source for the model (what `nndsl compile` writes)."""
    from .backends.torch_codegen import generate
    from .diagnostics import Abort

    res = check(path, source=source, model=model, **dims).raise_for_errors()
    try:
        return generate(res.ir)[0]
    except Abort as e:
        raise NNDSLError([e.diagnostic], res.sources) from None


def load(path: str | Path | None = None, model: str | None = None, seed: int | None = None, *,
         source: str | None = None, **params: Any):
    """Compile the spec and return an initialised `torch.nn.Module` (same seed -> identical weights)."""
    from .backends.torch_module import build_module
    from .diagnostics import Abort

    res = check(path, source=source, model=model, **params).raise_for_errors()
    try:
        return build_module(res.ir, seed)
    except Abort as e:
        raise NNDSLError([e.diagnostic], res.sources) from None
