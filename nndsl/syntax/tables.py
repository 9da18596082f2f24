"""The parser's tables as data: Lark's LALR table for grammar/nndsl.lark, its lexer's terminals in Lark's
order, and how each rule builds its value, written to grammar/nndsl.tables.json by
`python scripts/gen_tables.py`. The parser reads that file, so that checking a spec imports no Lark; the
file names the SHA-256 of the grammar it was made from, and when the grammar differs (an edited checkout)
the tables are made again from Lark in memory. JSON is only read, never executed.

tests/test_syntax.py checks that the committed file is what this module makes from the grammar now, and
that the parser gives the very AST (or error) that Lark's own parser gives on every spec we have."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..resources import grammar_path

FORMAT = 1


def tables_path() -> Path:
    return grammar_path().with_name("nndsl.tables.json")


def grammar_digest() -> str:
    return hashlib.sha256(grammar_path().read_bytes()).hexdigest()


def load() -> dict:
    """The tables for the grammar as it is now: the shipped file when it was made from this grammar,
    otherwise made from Lark (slower: Lark analyses the grammar)."""
    digest = grammar_digest()
    try:
        data = json.loads(tables_path().read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("format") == FORMAT and data.get("grammar") == digest:
            return data
    except (OSError, ValueError):
        pass
    from .parser import _lark

    return from_lark(_lark(), digest)


def from_lark(lark, digest: str) -> dict:
    """What the parser needs from a Lark LALR parser built with keep_all_tokens=True and
    maybe_placeholders=False: per state, per token, a shift (1, state) or a reduction (0, rule); per rule
    its origin, length, and how its value is built: the transformer method it calls (the rule's alias or
    name; None for the `_inlined` rules whose children go to their parent), whether a single child passes
    through unchanged (`?rule`), and which children are inlined rules to splice (Lark's child filter)."""
    from lark.lexer import UnlessCallback
    from lark.parsers.lalr_analysis import Shift

    from .parser import _ToAST

    core = lark.parser.parser.parser                     # ParsingFrontend -> LALR_Parser -> _Parser
    table = core.parse_table
    rules: list = []
    index: dict = {}

    def rule_id(rule) -> int:
        if id(rule) not in index:
            name = rule.alias or rule.options.template_source or rule.origin.name
            name = str(getattr(name, "name", name))
            expand = [not s.is_term and s.name.startswith("_") for s in rule.expansion]
            rules.append([rule.origin.name, len(rule.expansion), name if hasattr(_ToAST, name) else None,
                          bool(rule.options.expand1 and not rule.alias), expand if any(expand) else None])
            index[id(rule)] = len(rules) - 1
        return index[id(rule)]

    states = []
    for st in range(len(table.states)):
        row = {}
        for tok, (action, arg) in sorted(table.states[st].items()):
            row[tok] = [1, arg] if action is Shift else [0, rule_id(arg)]
        states.append(row)
    lexer = lark.parser.lexer.lexer                       # PostLexConnector -> BasicLexer
    scanner = lexer.scanner
    (name_type, unless), = lexer.callback.items()         # keywords folded into NAME, as Lark does
    assert isinstance(unless, UnlessCallback)
    words = {t.name: f"`{t.pattern.value}`" for t in lark.terminals if t.pattern.type == "str"}
    return {
        "format": FORMAT, "grammar": digest,
        "start": table.start_states["start"], "end": table.end_states["start"],
        "terminals": [[t.name, t.pattern.to_regexp()] for t in scanner.terminals],
        "flags": lexer.g_regex_flags, "name": name_type,
        "keywords": {t.pattern.value: t.name for t in unless.scanner.terminals},
        "ignore": sorted(lexer.ignore_types), "newline": sorted(lexer.newline_types), "words": words,
        "rules": rules, "states": states,
    }


def write() -> Path:
    from .parser import _lark

    out = tables_path()
    out.write_text(json.dumps(from_lark(_lark(), grammar_digest()), separators=(",", ":"), sort_keys=True) + "\n",
                   encoding="utf-8")
    return out
