"""Render diagnostics as rustc-style text or as JSON. The renderer never raises, and its cost is linear in
what it prints: each source is split into lines once, and a shown line is cut to a window around its
labels."""
from __future__ import annotations

import json
import unicodedata

from .model import Diagnostic, Label, Span

_COLORS = {"error": "\x1b[1;31m", "warning": "\x1b[1;33m", "note": "\x1b[1;36m"}
_BLUE, _BOLD, _RESET = "\x1b[1;34m", "\x1b[1m", "\x1b[0m"
WINDOW = 160          # columns of a source line shown around its labels


def split_lines(source: str) -> list[str]:
    """Lines as the lexer counts them: only `\\n` ends a line (a CR before it is dropped). Form feeds,
    lone CRs, U+2028 and friends stay inside their line, so line numbers agree with the parser's."""
    lines = source.split("\n")
    return [l[:-1] if l.endswith("\r") else l for l in lines]


def visible(text: str) -> str:
    """Text safe to print on a terminal, one character per character: control characters become their
    Unicode control pictures (NUL -> U+2400, CR -> U+240D, ...), other invisible separators U+FFFD."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch == "\t":
            out.append(ch)
        elif o < 0x20:
            out.append(chr(0x2400 + o))
        elif o == 0x7F:
            out.append("\u2421")
        elif unicodedata.category(ch) in ("Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn") and ch != "\u200d":
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


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


class _Lines:
    """Source lines, split once per file for a whole rendering run."""

    def __init__(self, sources: dict[str, str]):
        self.sources = sources
        self._cache: dict[str, list[str] | None] = {}

    def get(self, file: str, line: int) -> str | None:
        if file not in self._cache:
            src = self.sources.get(file)
            self._cache[file] = split_lines(src) if src is not None else None
        lines = self._cache[file]
        if lines is None:
            return None
        if 1 <= line <= len(lines):
            return lines[line - 1]
        return "" if line == len(lines) + 1 else None


def render(d: Diagnostic, sources: dict[str, str], color: bool = False, _lines: _Lines | None = None) -> str:
    try:
        return _render(d, _lines or _Lines(sources), color)
    except Exception:  # the renderer must never take the compiler down
        return f"{d.severity.value}[{d.code}]: {visible(d.message)}\n"


def _snippet(out: list[str], labels: list[Label], lines: _Lines, c, sev: str, pad: str, gutter: int) -> None:
    bar = c(_BLUE, "|")
    files: list[str] = []
    for l in labels:
        if l.span.file not in files:
            files.append(l.span.file)
    for fi, fname in enumerate(files):
        flabels = [l for l in labels if l.span.file == fname]
        if not any(lines.get(fname, l.span.line) is not None for l in flabels):
            continue  # the file's text is not at hand (it could not be read): the location line says it all
        if fi > 0:
            s = flabels[0].span
            out.append(f"{pad}{c(_BLUE, ':::')} {visible(s.file)}:{s.line}:{s.col}")
        out.append(f"{pad} {bar}")
        prev = None
        for line in sorted({l.span.line for l in flabels}):
            text = lines.get(fname, line)
            if text is None:
                continue
            if prev is not None and line > prev + 1:
                out.append(c(_BLUE, "..."))
            prev = line
            on_line = sorted((l for l in flabels if l.span.line == line), key=lambda l: l.span.col)
            # a window of the line around its labels, so a 1 MB line prints a few columns
            lo = 0 if len(text) <= WINDOW else max(0, min(l.span.col for l in on_line) - 1 - WINDOW // 4)
            hi = lo + WINDOW
            shown = text[lo:hi]
            pre, post = ("..." if lo > 0 else ""), ("..." if len(text) > hi else "")
            display = visible(shown).replace("\t", "    ")
            out.append(f"{c(_BLUE, str(line).rjust(gutter))} {bar} {pre}{display}{post}".rstrip())
            for l in on_line:
                col = max(l.span.col - 1 - lo, 0)
                start = _width(shown[:col]) + len(pre)
                end_col = (l.span.end_col if l.span.end_line == l.span.line else len(text) + 1) - 1 - lo
                n = max(1, _width(shown[col:max(min(end_col, len(shown)), col)]))
                mark = ("^" if l.primary else "-") * n
                mcol = _COLORS.get(sev, "") if l.primary else _BLUE
                msg = f" {visible(l.message)}" if l.message else ""
                out.append(f"{pad} {bar} {' ' * start}{c(mcol, mark + msg)}".rstrip())


def _render(d: Diagnostic, lines: _Lines, color: bool) -> str:
    sev = d.severity.value
    c = (lambda code, s: f"{code}{s}{_RESET}") if color else (lambda code, s: s)
    out = [c(_COLORS.get(sev, ""), f"{sev}[{d.code}]") + c(_BOLD, f": {visible(d.message)}")]
    labels: list[Label] = []
    if d.span is not None:
        labels.append(Label(span=d.span, message=d.label, primary=True))
    labels.extend(d.secondary)
    lines_needed = [l.span.line for l in labels] + [cs.span.line for cs in d.call_sites]
    gutter = len(str(max(lines_needed))) if lines_needed else 1
    pad = " " * gutter
    bar = c(_BLUE, "|")
    if labels:
        first = labels[0].span
        out.append(f"{pad}{c(_BLUE, '-->')} {visible(first.file)}:{first.line}:{first.col}")
        _snippet(out, labels, lines, c, sev, pad, gutter)
        if d.notes or d.help or d.call_sites:
            out.append(f"{pad} {bar}")
    for cs in d.call_sites:
        s = cs.span
        out.append(f"{pad} {c(_BLUE, '=')} {c(_BOLD, 'note')}: in `{visible(cs.block)}` called at "
                   f"{visible(s.file)}:{s.line}:{s.col}")
        _snippet(out, [Label(span=s, message="called here", primary=False)], lines, c, sev, pad, gutter)
        out.append(f"{pad} {bar}")
    if d.call_sites and not (d.notes or d.help):
        out.pop()
    for n in d.notes:
        out.append(f"{pad} {c(_BLUE, '=')} {c(_BOLD, 'note')}: {visible(n)}")
    if d.help:
        out.append(f"{pad} {c(_BLUE, '=')} {c(_BOLD, 'help')}: {visible(d.help)}")
    return "\n".join(out) + "\n"


def render_all(diags: list[Diagnostic], sources: dict[str, str], color: bool = False,
               omitted: dict[str, int] | None = None) -> str:
    lines = _Lines(sources)
    parts = [render(d, sources, color, lines) for d in diags]
    omitted = omitted or {}
    n_err = sum(d.is_error for d in diags) + omitted.get("errors", 0)
    n_warn = sum(d.severity.value == "warning" for d in diags) + omitted.get("warnings", 0)
    more = [f"{n} more {kind}" for kind, n in (("errors", omitted.get("errors", 0)),
                                                 ("warnings", omitted.get("warnings", 0))) if n]
    if more:
        parts.append(f"note: and {' and '.join(more)}, not shown\n")
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


def diagnostic_json(d: Diagnostic) -> dict:
    return {
        "code": d.code,
        "severity": d.severity.value,
        "message": d.message,
        "span": _span_json(d.span),
        "label": d.label,
        "labels": [{"span": _span_json(l.span), "message": l.message} for l in d.secondary],
        "notes": d.notes,
        "help": d.help,
        "call_sites": [{"block": cs.block, "span": _span_json(cs.span)} for cs in d.call_sites],
    }


def to_json(diags: list[Diagnostic]) -> str:
    return json.dumps([diagnostic_json(d) for d in diags], indent=2)
