"""Diagnostic data model: spans, labels, diagnostics, and the sink passes report into."""
from __future__ import annotations

import dataclasses
from enum import Enum

from pydantic import BaseModel, ConfigDict


@dataclasses.dataclass(slots=True, unsafe_hash=True)
class Span:
    """A region of a source file; lines and columns are 1-based, `end_col` is exclusive. A slotted
    dataclass, not a pydantic model: the parser makes one per node (pydantic validates and dumps it as a
    field of Diagnostic, the IR and the AST all the same). Not mutated once made."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def model_dump(self, mode: str = "python") -> dict:
        """As a dict, the way pydantic dumps it (for callers of the model API)."""
        return dataclasses.asdict(self)


class Severity(str, Enum):
    error = "error"
    warning = "warning"
    note = "note"


class Label(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True)

    span: Span
    message: str = ""
    primary: bool = False


class CallSite(BaseModel):
    """One level of the chain that led into a block: `block` was called at `span`."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    block: str
    span: Span


class Diagnostic(BaseModel):
    code: str
    severity: Severity = Severity.error
    message: str
    span: Span | None = None
    label: str = ""
    secondary: list[Label] = []
    notes: list[str] = []
    help: str | None = None
    call_sites: list[CallSite] = []   # innermost first; the last one is in the checked file

    @property
    def is_error(self) -> bool:
        return self.severity == Severity.error


class NNDSLError(Exception):
    """Raised by the Python API when a spec has errors; carries every diagnostic."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str] | None = None,
                 omitted: dict[str, int] | None = None):
        self.diagnostics = diagnostics
        self.sources = sources or {}
        self.omitted = omitted or {}
        super().__init__(self.render())

    def render(self) -> str:
        from .render import render_all

        return render_all(self.diagnostics, self.sources, color=False, omitted=self.omitted)


class Abort(Exception):
    """Internal control flow: a diagnostic was reported and the current unit cannot go on."""

    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic
        super().__init__(diagnostic.message)


class Sink:
    """Collects diagnostics from every pass; nothing stops at the first error."""

    def __init__(self, limits=None) -> None:
        self.items: list[Diagnostic] = []
        self._seen: set[tuple] = set()
        self.max_errors = getattr(limits, "errors", 100)
        self.max_warnings = getattr(limits, "warnings", 50)
        self.n_errors = self.n_warnings = 0
        self.omitted = {"errors": 0, "warnings": 0}   # beyond the caps: counted, not kept
        # Where the work is: the block instance path whose calls a diagnostic without call sites gets
        # (`chain_for` turns a path into them; the IR's `call_sites`, once there is an IR).
        self.context = ""
        self.chain_for = None

    def add(self, d: Diagnostic, context: str | None = None) -> Diagnostic:
        path = self.context if context is None else context
        if path and not d.call_sites and self.chain_for is not None:
            d.call_sites = self.chain_for(path)
        key = (d.code, d.message, d.span, tuple((c.block, c.span) for c in d.call_sites))
        if key in self._seen:
            return d
        self._seen.add(key)
        if d.is_error:
            self.n_errors += 1
            if self.n_errors > self.max_errors:
                self.omitted["errors"] += 1
                return d
        elif d.severity == Severity.warning:
            self.n_warnings += 1
            if self.n_warnings > self.max_warnings:
                self.omitted["warnings"] += 1
                return d
        self.items.append(d)
        return d

    def error(self, code: str, message: str, span: Span | None = None, context: str | None = None,
              **kw) -> Diagnostic:
        return self.add(Diagnostic(code=code, message=message, span=span, **kw), context)

    def warning(self, code: str, message: str, span: Span | None = None, context: str | None = None,
                **kw) -> Diagnostic:
        return self.add(Diagnostic(code=code, severity=Severity.warning, message=message, span=span, **kw),
                        context)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        def key(d: Diagnostic):
            s = d.span
            return (s.file, s.line, s.col) if s else ("", 0, 0)

        return sorted(self.items, key=key)
