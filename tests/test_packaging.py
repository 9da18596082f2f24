"""A wheel built from the repository, installed in a fresh venv and used from another directory,
finds its grammar and standard library."""
from __future__ import annotations

import shutil
import subprocess
import sys
import venv

import pytest

from conftest import EXAMPLES, ROOT


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to copy the tracked tree")
def test_wheel_in_fresh_venv(tmp_path):
    pytest.importorskip("hatchling")
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist),
                        str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    wheel = next(dist.glob("nndsl-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "nndsl/grammar/nndsl.lark" in names and "nndsl/grammar/nndsl.tables.json" in names
    assert "nndsl/stdlib_blocks/resnet.nn" in names and "nndsl/stdlib_blocks/transformer.nn" in names
    env = tmp_path / "venv"
    venv.create(env, system_site_packages=True, with_pip=False)  # torch & co come from the system
    py = env / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(EXAMPLES / "resnet18.nn", work / "net.nn")
    code = ("import nndsl, pathlib; f = pathlib.Path(nndsl.__file__); "
            "assert 'venv' in str(f), f; r = nndsl.check('net.nn'); assert r.ok, r.diagnostics; "
            "import sys; assert 'lark' not in sys.modules, 'the shipped tables were not used'; print('OK')")
    r = subprocess.run([str(py), "-c", code], cwd=work, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([str(env / "bin" / "nndsl"), "check", "net.nn"], cwd=work, capture_output=True, text=True)
    assert r.returncode == 0 and "11,689,512" in r.stdout, r.stdout + r.stderr
