"""`nndsl fmt`: the canonical layout of a `.nn` file, comments kept.

The layout is the unparser's (nndsl/syntax/unparse.py): one statement a line, two spaces per level, single
spaces around operators and after commas, no trailing whitespace, one blank line between top-level items
(imports, groups and acts of one kind stay together), at most one blank line between statements (where the
source had one or more). Nothing is wrapped or joined but statements: a statement written over several
lines comes out on one, unless it is a chain longer than 100 columns; then each stage takes a line of its own
(indented four spaces, led by `|>`), and a stage still too long opens up: an `if` or `repeat` stage with its
body inside the braces, a chain in parentheses with one stage a line.

Comments stay in order and next to the code they were next to: a comment on a line of its own stays on a
line of its own before the statement (or the closing brace) that followed it; a comment after code stays
after that statement's line. Trailing comments of consecutive lines are aligned one column past the longest
of those lines (as gofmt does), unless that would push them past column 100. A comment inside a statement
that spans several lines moves before the statement.

Formatting never changes meaning: the formatted file parses to the same AST (spans aside), which the tests
check over every example and hundreds of mutated specs, and it is a fixed point: fmt(fmt(x)) == fmt(x).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import ast as A
from .parser import _STRINGS_COMMENTS
from .unparse import _STAGES, _init, _sparsity, branches, expr, head, opening, stage, stmt

ALIGN_LIMIT = 100


@dataclass
class _Comment:
    line: int
    text: str
    own: bool          # alone on its line (else after code)
    used: bool = False


class FormatError(ValueError):
    """The file does not parse: formatting needs a valid spec. Carries the diagnostics."""

    def __init__(self, diagnostics):
        super().__init__(diagnostics[0].message if diagnostics else "syntax error")
        self.diagnostics = diagnostics


def _comments(text: str) -> list[_Comment]:
    out = []
    for i, line in enumerate(text.split("\n"), 1):
        if "#" not in line:
            continue
        for m in _STRINGS_COMMENTS.finditer(line):
            if m.group(0).startswith("#"):
                out.append(_Comment(i, m.group(0).rstrip(), not line[:m.start()].strip()))
                break
    return out


class _Writer:
    def __init__(self, text: str):
        self.comments = _comments(text)
        self.lines: list[tuple[str, str | None]] = []      # (code, trailing comment)
        self.blank_before: set[int] = set(i for i, line in enumerate(text.split("\n"), 1) if not line.strip())

    # comments -----------------------------------------------------------------------------------
    def leading(self, before: int, ind: str, after: int = 0) -> None:
        """Own-line comments on lines before `before`, with a blank line where the source had one between
        them or before what follows them."""
        last = None
        for c in self.comments:
            if not c.used and c.line < before and c.line > after:
                c.used = True
                if last is not None and self.had_blank(last, c.line):
                    self.blank()
                self.lines.append((ind + c.text, None))
                last = c.line
        if last is not None and self.had_blank(last, before):
            self.blank()

    def trailing(self, first: int, last: int, ind: str) -> list[str]:
        """Comments on the lines of a statement: the one after its last line trails it; the others (inside
        a multi-line statement) go before it."""
        inside, trail = [], None
        for c in self.comments:
            if not c.used and first <= c.line <= last:
                c.used = True
                if c.line == last and not c.own and trail is None:
                    trail = c.text
                else:
                    inside.append(c.text)
        for t in inside:
            self.lines.append((ind + t, None))
        return [trail] if trail is not None else []

    def blank(self) -> None:
        if self.lines and self.lines[-1] != ("", None):
            self.lines.append(("", None))

    def had_blank(self, start: int, stop: int) -> bool:
        return any(start < i < stop for i in self.blank_before)

    # statements ---------------------------------------------------------------------------------
    def body(self, stmts, ind: str, prev_end: int, close_line: int) -> None:
        for k, s in enumerate(stmts):
            first = min([s.span.line] + [c.line for c in self.comments if not c.used and prev_end < c.line
                                         < s.span.line])
            if k and self.had_blank(prev_end, first):
                self.blank()
            self.leading(s.span.line, ind, prev_end)
            if s.kind == "if":
                self._if(s, ind)
            else:
                code = _stmt(s, ind)
                trail = self.trailing(s.span.line, s.span.end_line, ind)
                for j, line in enumerate(code):
                    self.lines.append((line, trail[0] if trail and j == len(code) - 1 else None))
            prev_end = s.span.end_line
        self.leading(close_line, ind, prev_end)

    def _if(self, s: A.If, ind: str) -> None:
        head = f"{ind}if {expr(s.cond)} {{"
        trail = self.trailing(s.span.line, s.span.line, ind)
        self.lines.append((head, trail[0] if trail else None))
        else_line = _else_line(s)
        self.body(s.then, ind + "  ", s.span.line, else_line if s.orelse is not None else s.span.end_line)
        if s.orelse is not None:
            trail = self.trailing(else_line, else_line, ind)
            self.lines.append((f"{ind}}} else {{", trail[0] if trail else None))
            self.body(s.orelse, ind + "  ", else_line, s.span.end_line)
        trail = self.trailing(s.span.end_line, s.span.end_line, ind)
        self.lines.append((f"{ind}}}", trail[0] if trail else None))

    def render(self) -> str:
        """Trailing comments aligned: within a section (the lines between two braces) at one column past
        its longest commented line, if every comment then ends by ALIGN_LIMIT; else within each run of
        consecutive commented lines; else two spaces after the code."""
        out = [code for code, _ in self.lines]
        sections, start = [], 0
        for k, (code, _) in enumerate(self.lines):
            if code.rstrip().endswith("{") or code.strip().startswith("}"):
                sections += [(start, k), (k, k + 1)]
                start = k + 1
        sections.append((start, len(self.lines)))
        for a, b in sections:
            marked = [k for k in range(a, b) if self.lines[k][1] is not None]
            if not marked:
                continue
            if self._fits(marked):
                self._align(out, marked)
                continue
            run: list[int] = []
            for k in marked + [-1]:
                if run and k != run[-1] + 1:
                    self._align(out, run) if self._fits(run) else self._align(out, run, tight=True)
                    run = []
                run.append(k)
        while out and out[-1] == "":
            out.pop()
        return "\n".join(line.rstrip() for line in out) + "\n"

    def _fits(self, ks: list[int]) -> bool:
        col = max(len(self.lines[k][0]) for k in ks) + 2
        return all(col + len(self.lines[k][1]) <= ALIGN_LIMIT for k in ks)

    def _align(self, out: list[str], ks: list[int], tight: bool = False) -> None:
        col = max(len(self.lines[k][0]) for k in ks) + 2
        for k in ks:
            code, c = self.lines[k]
            at = len(code) + 2 if tight else col
            out[k] = code + " " * (at - len(code)) + c


def _header(head: str, params) -> list[str]:
    """`model M(a: int, ...) {`, its parameters filled into lines of at most ALIGN_LIMIT characters, the
    continuation lines aligned after the opening parenthesis."""
    if not params:
        return [head + " {"]
    parts = [f"{p.name}: {p.type}" + (f" = {expr(p.default)}" if p.default else "") for p in params]
    one = f"{head}({', '.join(parts)}) {{"
    if len(one) <= ALIGN_LIMIT:
        return [one]
    lines, cur = [], head + "("
    pad = " " * len(cur)
    for k, part in enumerate(parts):
        piece = part + (", " if k < len(parts) - 1 else ") {")
        if len(cur) + len(piece.rstrip()) > ALIGN_LIMIT and cur.strip() and not cur.endswith("("):
            lines.append(cur.rstrip())
            cur = pad
        cur += piece
    lines.append(cur)
    return lines


def _stmt(s, ind: str) -> list[str]:
    """A statement's lines: `init { ... }` and `sparsity { ... }` statements of several entries take one
    line per entry; everything else one line."""
    if s.kind in ("init", "sparsity") and len(s.entries) > 1:
        return [f"{ind}{s.kind} {{"] + [f"{ind}  {'.'.join(e.key)}: {expr(e.rule)}" for e in s.entries] + [f"{ind}}}"]
    lines = stmt(s, ind)
    if len(lines) == 1 and len(lines[0]) > ALIGN_LIMIT:     # a long chain: one stage a line
        if s.kind == "bind" and s.value.kind == "pipe":
            return _chain(f"{ind}{', '.join(s.targets)} = ", s.value, ind, _init(s.init) + _sparsity(s.sparsity))
        if s.kind == "output" and len(s.items) == 1 and s.items[0].value.kind == "pipe":
            it = s.items[0]
            return _chain(f"{ind}output {it.name + ' = ' if it.name else ''}", it.value, ind,
                          _init(it.init) + _sparsity(it.sparsity))
    return lines


def _chain(prefix: str, pipe, ind: str, tail: str) -> list[str]:
    """A chain too long for one line: the head after the binding, then each stage on a line of its own,
    indented four spaces and led by `|>`; a stage still too long opens up in turn (`_stage_lines`)."""
    if pipe.head.kind in _STAGES:        # `(repeat 2 { ... } |> ...)`: one stage, opened up
        lines = _stage_lines(pipe, ind, "")
        lines[0] = prefix + lines[0][len(ind):]
        lines[-1] += tail
        return lines
    lines = [prefix + head(pipe)]
    for st in pipe.stages:
        lines += _stage_lines(st, ind + "    ", "|> ")
    lines[-1] += tail
    return lines


def _stage_lines(st, ind: str, lead: str) -> list[str]:
    """One stage: on one line if it fits; else an `if` or `repeat` stage with its body one stage a line
    inside the braces, a chain in parentheses with a stage a line inside them."""
    one = stage(st)
    if len(ind) + len(lead) + len(one) <= ALIGN_LIMIT or st.kind not in (*_STAGES, "pipe"):
        return [ind + lead + one]
    if st.kind == "pipe":
        if st.head.kind in _STAGES:
            first = _stage_lines(st.head, ind, lead + "(")
        else:
            first = [ind + lead + "(" + expr(st.head, 1)]
        out = first
        for s in st.stages:
            out += _stage_lines(s, ind + "    ", "|> ")
        out[-1] += ")"
        return out
    body, orelse = branches(st)
    out = [f"{ind}{lead}{opening(st)} {{"] + _seq_lines(body, ind + "  ")
    if orelse is not None:
        out += [f"{ind}}} else {{"] + _seq_lines(orelse, ind + "  ")
    return out + [f"{ind}}}"]


def _seq_lines(stages, ind: str) -> list[str]:
    out: list[str] = []
    for k, s in enumerate(stages):
        out += _stage_lines(s, ind, "|> " if k else "")
    return out


def _else_line(s: A.If) -> int:
    """The line of `} else {`: after the last statement of the `then` branch, before the first of `else`."""
    if s.orelse:
        return s.orelse[0].span.line if not s.then or s.orelse[0].span.line > s.then[-1].span.end_line \
            else s.then[-1].span.end_line
    return s.then[-1].span.end_line if s.then else s.span.line


def _item_line(it) -> str:
    if it.kind == "import":
        tgt = '"' + it.path.replace("\\", "\\\\").replace('"', '\\"') + '"' if it.path is not None else it.module
        return f"import {tgt}" + (f" as {it.alias}" if it.alias else "")
    if it.kind == "group":
        return f"group {it.name} = {expr(it.value)}"
    ps = "".join(f", {p.name}: {p.type}" + (f" = {expr(p.default)}" if p.default else "") for p in it.params)
    return f"act {it.name}({it.arg}{ps}) = {expr(it.body)}"


def format_module(m: A.Module, text: str) -> str:
    w = _Writer(text)
    prev_kind, prev_end = None, 0
    for it in m.items:
        first = min([it.span.line] + [c.line for c in w.comments if not c.used and prev_end < c.line < it.span.line])
        one_liner = it.kind in ("import", "group", "act")
        if prev_kind is not None and not (one_liner and it.kind == prev_kind and not w.had_blank(prev_end, first)):
            w.blank()
        w.leading(it.span.line, "", prev_end)
        if one_liner:
            trail = w.trailing(it.span.line, it.span.end_line, "")
            w.lines.append((_item_line(it), trail[0] if trail else None))
        else:
            head_end = it.span.line
            trail = [c for c in w.comments if not c.used and c.line == head_end and not c.own]
            for c in trail:
                c.used = True
            for k, line in enumerate(_header(f"{'model' if it.is_model else 'block'} {it.name}", it.params)):
                w.lines.append((line, None))
            if trail:
                w.lines[-1] = (w.lines[-1][0], trail[0].text)
            for c in trail[1:]:
                w.lines.append(("  " + c.text, None))
            w.body(it.body, "  ", head_end, it.span.end_line)
            closing = w.trailing(it.span.end_line, it.span.end_line, "")
            w.lines.append(("}", closing[0] if closing else None))
        prev_kind, prev_end = it.kind, it.span.end_line
    rest = [c for c in w.comments if not c.used]
    if rest:
        if w.lines and w.had_blank(prev_end, rest[0].line):
            w.blank()
        for c in rest:
            c.used = True
            w.lines.append((c.text, None))
    return w.render()


def format_text(text: str, file: str = "<string>") -> str:
    """The canonical layout of `text`. Raises FormatError (with diagnostics) when it does not parse."""
    from ..diagnostics import Diagnostic
    from ..loader import file_span
    from .parser import parse_recovering

    mod, diags = parse_recovering(text, file)
    if mod is None or diags:
        raise FormatError(diags)
    try:
        return format_module(mod, text)
    except RecursionError:
        raise FormatError([Diagnostic(code="E0112", message="the spec is nested too deeply to format",
                                      span=file_span(file))]) from None
