"""Editor support: the TextMate grammar is generated from the language (its keywords, the op registry),
highlights what it should, and the VS Code extension that starts `nndsl lsp` packages with npm and vsce."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VSCODE = ROOT / "editors" / "vscode"
sys.path.insert(0, str(ROOT / "scripts"))


def scopes(line: str) -> dict[str, str]:
    """Token -> scope for one line, with the grammar's top-level patterns tried left to right, first match
    wins (enough of a TextMate engine for these flat patterns)."""
    g = json.loads((VSCODE / "syntaxes" / "nndsl.tmLanguage.json").read_text())
    rules = []
    for inc in g["patterns"]:
        r = g["repository"][inc["include"][1:]]
        rules += r.get("patterns", [r])
    out, pos = {}, 0
    while pos < len(line):
        best = None
        for r in rules:
            m = re.compile(r["match"]).search(line, pos)
            if m and (best is None or m.start() < best[0].start()):
                best = (m, r)
        if best is None:
            break
        m, r = best
        if "captures" in r:
            for k, c in r["captures"].items():
                out[m.group(int(k))] = c["name"]
        else:
            out[m.group(0)] = r["name"]
        pos = max(m.end(), pos + 1)
    return out


def test_the_grammar_is_generated_from_the_language():
    import gen_editors

    assert (VSCODE / "syntaxes" / "nndsl.tmLanguage.json").read_text() == gen_editors.render(), \
        "regenerate: python scripts/gen_editors.py"


def test_it_highlights_the_language():
    s = scopes('model GPT(D: int = 768) {  # a comment')
    assert s["GPT"] == "entity.name.type.nndsl" and s["model"] == "keyword.other.definition.nndsl"
    assert s["# a comment"].startswith("comment") and s["768"] == "constant.numeric.nndsl"
    s = scopes('  h = relu(linear(x, 3M)) |> Block(64) sparsity nm(2, 4)')
    assert s["relu"] == s["linear"] == "support.function.op.nndsl" and s["Block"] == "entity.name.type.block.nndsl"
    assert s["3M"] == "constant.numeric.nndsl" and s["|>"] == "keyword.operator.nndsl"
    assert s["sparsity"] == "keyword.control.nndsl" and s["h"] == "variable.other.binding.nndsl"
    s = scopes('  ensure y invariant under S and true  # "not a string"')
    assert s["ensure"] == s["invariant"] == s["under"] == "keyword.control.nndsl"
    assert s["true"] == "constant.language.nndsl" and s['# "not a string"'].startswith("comment")


def test_the_manifest_starts_the_language_server():
    pkg = json.loads((VSCODE / "package.json").read_text())
    assert pkg["contributes"]["languages"][0]["extensions"] == [".nn"]
    assert pkg["contributes"]["configuration"]["properties"]["nndsl.server.command"]["default"] == ["nndsl", "lsp"]
    assert "vscode-languageclient/node" in (VSCODE / "extension.js").read_text()


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm builds the extension")
def test_the_vscode_extension_packages(tmp_path):
    work = tmp_path / "vscode"
    shutil.copytree(VSCODE, work, ignore=shutil.ignore_patterns("node_modules", "*.vsix", "package-lock.json"))
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error"],
                       cwd=work, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(["npx", "--no-install", "vsce", "package", "--allow-missing-repository", "--skip-license",
                        "-o", "nndsl.vsix"], cwd=work, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    names = zipfile.ZipFile(work / "nndsl.vsix").namelist()
    assert {"extension/package.json", "extension/extension.js", "extension/syntaxes/nndsl.tmLanguage.json",
            "extension/language-configuration.json"} <= set(names)
    assert any(n.startswith("extension/node_modules/vscode-languageclient/") for n in names)
    assert not any("/@vscode/vsce/" in n for n in names)                  # build tools stay out
