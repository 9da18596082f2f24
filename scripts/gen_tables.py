"""Regenerate grammar/nndsl.tables.json (the parser's LALR table and lexer, made by Lark from
grammar/nndsl.lark; see nndsl/syntax/tables.py) after editing the grammar. tests/test_syntax.py checks
that the committed file is this script's output."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nndsl.syntax.tables import write  # noqa: E402

if __name__ == "__main__":
    print(write())
