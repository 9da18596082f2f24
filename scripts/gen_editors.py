"""Regenerate editors/vscode/syntaxes/nndsl.tmLanguage.json (the TextMate grammar: VS Code, and any editor
that reads TextMate grammars) from the language's keywords (grammar/nndsl.lark) and the op registry.
tests/test_editors.py checks that the committed grammar is this script's output."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "editors" / "vscode" / "syntaxes" / "nndsl.tmLanguage.json"


def grammar() -> dict:
    from nndsl.ops import registry as R

    words = sorted(set(re.findall(r'"([a-z_]+)"', (ROOT / "grammar" / "nndsl.lark").read_text())))
    constants = [w for w in words if w in ("true", "false")]
    operators = [w for w in words if w in ("and", "or", "not")]
    keywords = [w for w in words if w not in constants + operators]
    ops = sorted(R.all_names())
    alt = lambda xs: "|".join(re.escape(x) for x in xs)  # noqa: E731
    return {
        "name": "nndsl",
        "scopeName": "source.nndsl",
        "fileTypes": ["nn"],
        "patterns": [{"include": "#comment"}, {"include": "#definition"}, {"include": "#string"},
                     {"include": "#number"}, {"include": "#keyword"}, {"include": "#call"},
                     {"include": "#operator"}],
        "repository": {
            "comment": {"name": "comment.line.number-sign.nndsl", "match": "#.*$"},
            "string": {"name": "string.quoted.double.nndsl", "match": r'"([^"\\\n]|\\.)*"'},
            "number": {"name": "constant.numeric.nndsl",
                       "match": r"(?<![A-Za-z0-9_])((\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)[kMGB]?(?![A-Za-z0-9_])"},
            "definition": {"match": r"\b(model|block|act|group)\s+([A-Za-z_][A-Za-z0-9_]*)",
                           "captures": {"1": {"name": "keyword.other.definition.nndsl"},
                                        "2": {"name": "entity.name.type.nndsl"}}},
            "keyword": {"patterns": [
                {"name": "keyword.control.nndsl", "match": rf"\b({alt(keywords)})\b"},
                {"name": "constant.language.nndsl", "match": rf"\b({alt(constants)})\b"},
                {"name": "keyword.operator.word.nndsl", "match": rf"\b({alt(operators)})\b"}]},
            "call": {"patterns": [
                {"match": rf"\b({alt(ops)})(?=\s*\()", "name": "support.function.op.nndsl"},
                {"match": r"\b([A-Z][A-Za-z0-9_]*)(?=\s*\()", "name": "entity.name.type.block.nndsl"},
                {"match": r"\b([A-Za-z_][A-Za-z0-9_]*)(?=\s*=[^=])", "name": "variable.other.binding.nndsl"}]},
            "operator": {"name": "keyword.operator.nndsl", "match": r"\|>|==|!=|<=|>=|//|[-+*/%@<>=]"},
        },
    }


def render() -> str:
    return json.dumps(grammar(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render())
    print(f"wrote {OUT.relative_to(ROOT)}")
