"""Render diagnostics as rustc-style text or as JSON. The renderer never raises."""
from __future__ import annotations

import json
import unicodedata

from .model import Diagnostic, Label, Span

_COLORS = {"error": "\x1b[1;31m", "warning": "\x1b[1;33m", "note": "\x1b[1;36m"}
_BLUE, _BOLD, _RESET = "\x1b[1;34m", "\x1b[1m", "\x1b[0m"


def _width(text: str) -> int:
    """Display width: wide (East Asian) characters take two columns, tabs four."""
    w = 0
    for ch in text:
        if ch == "\t":
            w += 4
        elif unicodedata.combining(ch):
            continue
        else:
            w += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return w


def _line_text(source: str | None, line: int) -> str | None:
    if source is None:
        return None
    lines = source.splitlines()
    if 1 <= line <= len(lines):
        return lines[line - 1]
    if line == len(lines) + 1:
        return ""
    return None


def render(d: Diagnostic, sources: dict[str, str], color: bool = False) -> str:
    try:
        return _render(d, sources, color)
    except Exception:  # the renderer must never take the compiler down
        return f"{d.severity.value}[{d.code}]: {d.message}\n"


def _render(d: Diagnostic, sources: dict[str, str], color: bool) -> str:
    sev = d.severity.value
    c = (lambda code, s: f"{code}{s}{_RESET}") if color else (lambda code, s: s)
    out = [c(_COLORS.get(sev, ""), f"{sev}[{d.code}]") + c(_BOLD, f": {d.message}")]
    labels: list[Label] = []
    if d.span is not None:
        labels.append(Label(span=d.span, message=d.label, primary=True))
    labels.extend(d.secondary)
    lines_needed = [l.span.line for l in labels]
    gutter = len(str(max(lines_needed))) if lines_needed else 1
    pad = " " * gutter
    bar = c(_BLUE, "|")
    if labels:
        first = labels[0].span
        out.append(f"{pad}{c(_BLUE, '-->')} {first.file}:{first.line}:{first.col}")
        # group labels by file, then by line, keeping the primary file first
        files: list[str] = []
        for l in labels:
            if l.span.file not in files:
                files.append(l.span.file)
        for fi, fname in enumerate(files):
            flabels = [l for l in labels if l.span.file == fname]
            if fi > 0:
                s = flabels[0].span
                out.append(f"{pad}{c(_BLUE, ':::')} {s.file}:{s.line}:{s.col}")
            out.append(f"{pad} {bar}")
            prev = None
            for line in sorted({l.span.line for l in flabels}):
                text = _line_text(sources.get(fname), line)
                if text is None:
                    continue
                if prev is not None and line > prev + 1:
                    out.append(c(_BLUE, "..."))
                prev = line
                shown = text.replace("\t", "    ")
                out.append(f"{c(_BLUE, str(line).rjust(gutter))} {bar} {shown}".rstrip())
                on_line = sorted((l for l in flabels if l.span.line == line), key=lambda l: (not l.primary, l.span.col))
                on_line.sort(key=lambda l: l.span.col)
                for l in on_line:
                    start = _width(text[: max(l.span.col - 1, 0)])
                    end_col = l.span.end_col if l.span.end_line == l.span.line else len(text) + 1
                    n = max(1, _width(text[max(l.span.col - 1, 0): max(end_col - 1, 0)]))
                    mark = ("^" if l.primary else "-") * n
                    mcol = _COLORS.get(sev, "") if l.primary else _BLUE
                    msg = f" {l.message}" if l.message else ""
                    out.append(f"{pad} {bar} {' ' * start}{c(mcol, mark + msg)}".rstrip())
        if d.notes or d.help:
            out.append(f"{pad} {bar}")
    for n in d.notes:
        out.append(f"{pad} {c(_BLUE, '=')} {c(_BOLD, 'note')}: {n}")
    if d.help:
        out.append(f"{pad} {c(_BLUE, '=')} {c(_BOLD, 'help')}: {d.help}")
    return "\n".join(out) + "\n"


def render_all(diags: list[Diagnostic], sources: dict[str, str], color: bool = False) -> str:
    parts = [render(d, sources, color) for d in diags]
    n_err = sum(d.is_error for d in diags)
    n_warn = sum(d.severity.value == "warning" for d in diags)
    summary = []
    if n_err:
        summary.append(f"{n_err} error{'s' if n_err != 1 else ''}")
    if n_warn:
        summary.append(f"{n_warn} warning{'s' if n_warn != 1 else ''}")
    text = "\n".join(parts)
    if summary and n_err:
        text += f"\nerror: could not check the spec: {', '.join(summary)} emitted\n"
    return text


def _span_json(s: Span | None):
    return None if s is None else s.model_dump()


def to_json(diags: list[Diagnostic]) -> str:
    return json.dumps(
        [
            {
                "code": d.code,
                "severity": d.severity.value,
                "message": d.message,
                "span": _span_json(d.span),
                "label": d.label,
                "labels": [{"span": _span_json(l.span), "message": l.message} for l in d.secondary],
                "notes": d.notes,
                "help": d.help,
            }
            for d in diags
        ],
        indent=2,
    )
