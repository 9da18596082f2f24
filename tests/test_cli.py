"""The command line, run as a real subprocess: exit codes, outputs, JSON, diagrams through real `dot`."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import EXAMPLES, ROOT, UI


def nndsl(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nndsl", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=300)


def test_check_ok_prints_inputs_outputs_params():
    r = nndsl("check", EXAMPLES / "resnet18.nn")
    assert r.returncode == 0, r.stderr
    assert "ok:" in r.stdout and "image: [B, 3, H, W]" in r.stdout and "logits: [B, 1000]" in r.stdout
    assert "11,689,512" in r.stdout


def test_check_several_files_and_errors_exit_1():
    r = nndsl("check", EXAMPLES / "mlp.nn", UI / "E0201.nn")
    assert r.returncode == 1
    assert "ok: " in r.stdout
    assert "error[E0201]: shapes do not match in `+`" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_usage_errors_exit_2():
    assert nndsl("check").returncode == 2
    r = nndsl("check", "does/not/exist.nn")  # a file that cannot be read is a diagnostic on the file
    assert r.returncode == 1 and "error[E0108]: cannot read `does/not/exist.nn`: no such file" in r.stderr
    assert nndsl("check", EXAMPLES / "mlp.nn", "--dim", "oops").returncode == 2


def test_check_json():
    r = nndsl("check", UI / "E0204.nn", "--format", "json")
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["ok"] is False and data["version"] == 1 and len(data["files"]) == 1
    d = data["files"][0]["diagnostics"][0]
    assert d["code"] == "E0204" and d["span"]["line"] == 8 and d["labels"][0]["span"]["line"] == 2


def test_check_reports_all_independent_errors():
    src = ("model M {\n  input x: [B, 8]\n  a = lienar(x, 3)\n  b = conv2d(x, 4, kernel=3)\n"
           "  c = relu(y)\n  output x\n}\n")
    from nndsl import check

    res = check(source=src)
    assert sorted(d.code for d in res.errors) == ["E0101", "E0102", "E0202"]


def test_dim_binds_parameters_and_free_dims():
    r = nndsl("check", EXAMPLES / "resnet18.nn", "--dim", "num_classes=10", "--dim", "H=32", "--dim", "W=32")
    assert r.returncode == 0, r.stderr
    assert "image: [B, 3, 32, 32]" in r.stdout and "logits: [B, 10]" in r.stdout


def test_model_selection():
    r = nndsl("check", UI / "E0110.nn")  # several models: every one is checked
    assert r.returncode == 0 and "(model First)" in r.stdout and "(model Second)" in r.stdout
    r = nndsl("check", UI / "E0110.nn", EXAMPLES / "mlp.nn", "--format", "json")
    assert [(e["model"], e["ok"]) for e in json.loads(r.stdout)["files"]] == [
        ("First", True), ("Second", True), ("MnistMLP", True)]
    assert nndsl("summary", UI / "E0110.nn").returncode == 1  # one-model commands still need -m
    r = nndsl("check", UI / "E0110.nn", "-m", "Second")
    assert r.returncode == 0 and "model Second" in r.stdout
    r = nndsl("check", UI / "E0110.nn", "-m", "Secnd")
    assert r.returncode == 1 and "did you mean `Second`" in r.stderr


def test_summary_table_and_json():
    r = nndsl("summary", EXAMPLES / "resnet50.nn", "--dim", "B=1")
    assert r.returncode == 0, r.stderr
    assert "layer1.0.conv1" in r.stdout and "total_params:     25,557,032" in r.stdout
    r = nndsl("summary", EXAMPLES / "resnet50.nn", "--json", "--dim", "B=1")
    data = json.loads(r.stdout)
    assert data["total_params"] == 25_557_032 and data["trainable_params"] == 25_557_032
    assert isinstance(data["flops"], int) and 7.5e9 < data["flops"] < 8.7e9  # ~4.1 GMACs
    names = [l["name"] for l in data["layers"]]
    assert "layer4.2.conv3" in names and "fc" in names
    r = nndsl("summary", EXAMPLES / "gpt2_small.nn", "--json")
    assert json.loads(r.stdout)["flops"].count("B") >= 1  # symbolic without --dim


def test_compile_writes_standalone_source(tmp_path):
    out = tmp_path / "resnet18.py"
    r = nndsl("compile", EXAMPLES / "resnet18.nn", "-o", out)
    assert r.returncode == 0, r.stderr
    src = out.read_text()
    assert "class ResNet18(nn.Module):" in src and "class BasicBlock(nn.Module):" in src
    compile(src, str(out), "exec")
    r = nndsl("compile", EXAMPLES / "mlp.nn")
    assert "class MnistMLP(nn.Module)" in r.stdout


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
@pytest.mark.parametrize("ext", ["svg", "png", "pdf"])
def test_draw_through_real_dot(tmp_path, ext):
    out = tmp_path / f"unet.{ext}"
    r = nndsl("draw", EXAMPLES / "unet.nn", "-o", out, "--style", "graph")
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert len(data) > 1000
    if ext == "svg":
        text = data.decode()
        assert "<svg" in text and "down1 : Down" in text and "inc.c1.0" in text


def test_draw_dot_source(tmp_path):
    out = tmp_path / "g.dot"
    r = nndsl("draw", EXAMPLES / "resnet18.nn", "-o", out, "--style", "graph")
    assert r.returncode == 0
    text = out.read_text()
    assert text.startswith('digraph "ResNet18"') and "cluster_layer1.0" in text


def test_explain_every_code_and_docs_list_them():
    from nndsl.diagnostics import CODES
    from nndsl.diagnostics.codes import errors_markdown

    r = nndsl("explain", "E0201")
    assert r.returncode == 0 and "shape mismatch" in r.stdout
    assert nndsl("explain", "E4242").returncode == 2
    doc = (ROOT / "docs" / "errors.md").read_text()
    assert doc == errors_markdown(), "docs/errors.md is generated: python scripts/gen_docs.py"
    for code in CODES:
        assert f"## {code}:" in doc


def test_front_end_does_not_import_torch():
    code = ("import sys, nndsl, nndsl.cli; from nndsl.backends import summary, draw; "
            "r = nndsl.check('examples/resnet50.nn'); assert r.ok; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_unnamed_outputs_take_the_bindings_name():
    from nndsl import check

    res = check(source="model M {\n  input x: [B, 4]\n  h = relu(x)\n  output h, linear(h, 2)\n}\n")
    assert [o.name for o in res.ir.meta.outputs] == ["h", "out1"]


def test_import_nndsl_loads_no_front_end():
    """`import nndsl` is cheap (PEP 562): the parser, IR and their libraries load on first use."""
    code = ("import sys, nndsl\n"
            "heavy = [m for m in ('pydantic', 'networkx', 'lark', 'typer', 'torch', 'nndsl.compiler') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "assert nndsl.check('examples/mlp.nn').ok and 'nndsl.compiler' in sys.modules\n"
            "assert issubclass(nndsl.NNDSLError, Exception) and 'torch' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
