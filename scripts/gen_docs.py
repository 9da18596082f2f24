"""Regenerate the generated parts of docs/: errors.md (from the code catalogue) and ops.md (from the
op registry)."""
from pathlib import Path

from nndsl.diagnostics.codes import errors_markdown
from nndsl.docs import ops_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs"
(DOCS / "errors.md").write_text(errors_markdown())
(DOCS / "ops.md").write_text(ops_markdown())
