"""Neural circuit diagrams: the layout model (nndsl/backends/ncd.py) and its SVG through real Graphviz."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import nndsl
from nndsl.backends.ncd import Options, axis_label, layout, overlaps

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ALL = sorted(EXAMPLES.glob("*.nn"))
BOXES = ("linear", "conv", "pool", "box", "block", "index", "reduce", "bar", "norm", "softmax")
HAVE_DOT = shutil.which("neato") is not None
SVG = "{http://www.w3.org/2000/svg}"


def checked(path, **kw):
    res = nndsl.check(path, **kw)
    assert res.ok, res.diagnostics
    return res.ir


def tensor_rank(ir, key: str) -> int:
    node, port = key.rsplit(":", 1)
    return len(ir.node(node).outputs[int(port)].shape)


def y_at(points, x):
    """The y values of a Bézier wire's control points over the pieces that cover x (pass-by runs are
    level there, so control points are the curve)."""
    out = []
    for i in range(0, len(points) - 1, 3):
        piece = points[i:i + 4]
        xs = [p[0] for p in piece]
        if min(xs) - 0.01 <= x <= max(xs) + 0.01:
            out += [p[1] for p in piece]
    return out


def check_grammar(ir, d):
    """The checklist of the diagram grammar, on the layout model."""
    # one edge per axis per segment, in axis order, labelled with the axis
    seg = defaultdict(list)
    for w in d.wires:
        seg[(w.segment, w.bundle)].append(w)
        assert w.label == axis_label(ir, w.axis), (w.label, w.axis)
        assert w.points[-1][0] >= w.points[0][0] - 0.01, "wires run left to right"
    for (s, b), ws in seg.items():
        r = tensor_rank(ir, ws[0].tensor)
        assert sorted(w.index for w in ws) == list(range(r)), (s, ws[0].tensor, [w.index for w in ws])
        starts = sorted(ws, key=lambda w: w.index)
        if all(abs(w.points[0][0] - starts[0].points[0][0]) < 0.01 and not w.src for w in starts):
            ys = [w.points[0][1] for w in starts]
            assert ys == sorted(ys), "a bundle's wires are stacked in axis order"
    # a box spans exactly the wires it consumes and produces; every other wire passes it outside
    for g in d.glyphs:
        if g.kind not in BOXES:
            continue
        ends = [w for w in d.wires if w.dst == g.id]
        starts = [w for w in d.wires if w.src == g.id]
        # the parts of one op's glyph (a bar's dots, attention's caps and triangle) share its wires
        base = g.id.split("#")[0]
        mine = {id(w) for w in d.wires if w.dst.split("#")[0] == base or w.src.split("#")[0] == base}
        for w in ends:
            assert g.y0 - 0.01 <= w.points[-1][1] <= g.y1 + 0.01, (g.id, w.label)
        for w in starts:
            assert g.y0 - 0.01 <= w.points[0][1] <= g.y1 + 0.01, (g.id, w.label)
        mine |= {id(w) for w in ends + starts}
        for w in d.wires:
            if id(w) in mine or w.points[0][0] > g.x1 or w.points[-1][0] < g.x0:
                continue
            for x in (g.x0 + 0.5, g.cx, g.x1 - 0.5):
                for y in y_at(w.points, x):
                    assert not (g.y0 < y < g.y1), f"{w.label} crosses {g.id} ({g.kind}) inside its box"
    # a fence holds every op of its instance, and nests inside its parent's
    fences = {f.path: f for f in d.fences}
    for (L, R, gid, scope) in d.columns:
        for p in ir.ancestors(scope):
            if p in fences:
                f = fences[p]
                assert f.x0 <= L and R <= f.x1, (gid, p)
    for f in d.fences:
        if f.parent in fences:
            P = fences[f.parent]
            assert P.x0 <= f.x0 and f.x1 <= P.x1 and P.y0 <= f.y0 and f.y1 <= P.y1
    # no label sits on another label, a glyph or a text
    assert overlaps(d) == []


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
@pytest.mark.parametrize("depth", [1, 2])
def test_every_example_follows_the_diagram_grammar(path, depth):
    ir = checked(path)
    d = layout(ir, Options(depth=depth))
    assert d.wires and d.width > 0
    check_grammar(ir, d)


def test_attention_fixture_draws_as_the_paper():
    ir = checked(EXAMPLES / "attention.nn")
    d = layout(ir, Options())
    name = {i: a.name for i, a in ir.axes.items()}
    L = {g.id.rsplit(".", 1)[-1]: g for g in d.glyphs if g.kind == "linear"}
    assert set(L) == {"q", "k", "v", "out"} and all(g.learned for g in L.values())
    for k in "qkv":       # L^Q, L^K, L^V emit the head axis h and the head_dim axis k; m is consumed
        assert sorted(name[a] for a in L[k].produces) == ["h", "k"], L[k].produces
        assert [name[a] for a in L[k].consumes] == ["D"]
        assert f"<SUP>w{k}</SUP>" in L[k].html
    assert sorted(name[a] for a in L["out"].consumes) == ["h", "k"] and [name[a] for a in L["out"].produces] == ["m"]
    caps = [g for g in d.glyphs if g.kind == "cap"]
    assert [name[c.consumes[0]] for c in caps] == ["k", "S"]       # Q·K over head_dim, weights·V over keys
    score_cap = caps[0]
    assert score_cap.points[0][0] == score_cap.points[-1][0] and score_cap.points[0][1] != score_cap.points[-1][1]
    feeding = [w for w in d.wires if w.dst == score_cap.id and w.points[-1][0] == score_cap.x0]
    assert [w.label for w in feeding] == ["k=16", "k=16"]
    dots = [g for g in d.glyphs if g.kind == "dot"]
    h_dots = [g for g in dots if name[g.produces[0]] == "h"]
    assert len(h_dots) == 2 and all(len(g.consumes) == 2 for g in h_dots)   # h shared, not contracted
    for g in h_dots:
        ins = [w for w in d.wires if w.dst == g.id]
        outs = [w for w in d.wires if w.src == g.id]
        assert len(ins) == 2 and len(outs) == 1 and all(w.label == "h=4" for w in ins + outs)
    tri = [g for g in d.glyphs if g.kind == "softmax"]
    assert len(tri) == 1
    into = [w for w in d.wires if w.dst == tri[0].id]
    assert [w.label for w in into] == ["S"]                            # on the key axis only
    passing = [w for w in d.wires if w.points[0][0] < tri[0].x0 and w.points[-1][0] > tri[0].x1]
    assert {w.label for w in passing} >= {"B", "h=4", "T"}
    copies = [g for g in d.glyphs if g.kind == "copy"]
    assert len(copies) == 3                                          # y copied for K and V, one dot per axis


def test_fused_attention_op_draws_caps_dots_and_the_softmax():
    ir = checked(EXAMPLES / "gpt2_small.nn")
    d = layout(ir, Options(depth=3))
    att = [g for g in d.glyphs if g.node.endswith("attn.ctx")]
    kinds = Counter(g.kind for g in att)
    assert kinds == {"dot": 2, "cap": 2, "softmax": 1}, kinds


def test_collapsed_repeats_show_the_count_and_depth_sets_the_fences():
    ir = checked(EXAMPLES / "gpt2_small.nn")
    d1 = layout(ir, Options(depth=1))
    blocks = [g for g in d1.glyphs if g.kind == "block"]
    assert [g.label for g in blocks] == ["TransformerBlock ×12"]
    assert [f.path for f in d1.fences] == ["logits"]
    d2 = layout(ir, Options(depth=2))
    assert [(f.path, f.count) for f in d2.fences] == [("logits", 1), ("logits.h.0", 12)]
    assert any(t.text == "×12" for t in d2.texts)
    assert sorted(g.label for g in d2.glyphs if g.kind == "block") == ["attn: MultiHeadAttention", "mlp: FeedForward"]
    d3 = layout(ir, Options(depth=3))
    assert [f.path for f in d3.fences] == ["logits", "logits.h.0", "logits.h.0.attn", "logits.h.0.mlp"]
    d0 = layout(ir, Options(depth=0))
    assert not d0.fences and [g.label for g in d0.glyphs if g.kind == "block"] == ["logits: GPT2"]
    # --expand opens one instance (and its ancestors) whatever the depth, and stops its run collapsing
    de = layout(ir, Options(depth=1, expand=("logits.h.3",)))
    assert "logits.h.3" in {f.path for f in de.fences} and "logits.h.0" not in {f.path for f in de.fences}
    # ResNet-18: identical chained blocks collapse, different ones do not
    r = checked(EXAMPLES / "resnet18.nn")
    dr = layout(r, Options(depth=1))
    counts = {f.path: f.count for f in dr.fences}
    assert counts == {"layer1.0": 2, "layer2.0": 1, "layer2.1": 1, "layer3.0": 1, "layer3.1": 1,
                      "layer4.0": 1, "layer4.1": 1}
    assert len(layout(r, Options(depth=0)).fences) == 0


def test_fences_follow_the_instance_tree():
    ir = checked(EXAMPLES / "unet.nn")
    for depth in (1, 2, 3):
        d = layout(ir, Options(depth=depth))
        want = {p for p, lvl in ((p, len(ir.ancestors(p))) for p in ir.meta.instances if p) if lvl <= depth}
        assert {f.path for f in d.fences} == want
        for f in d.fences:
            assert f.parent == (ir.meta.instances[f.path].parent)


def test_learned_ops_are_bold_and_linear_says_bias():
    ir = checked(EXAMPLES / "mlp.nn")
    d = layout(ir)
    lin = [g for g in d.glyphs if g.kind == "linear"]
    assert len(lin) == 3 and all(g.learned and g.html.startswith("<B>L</B><SUB>+</SUB>") for g in lin)
    g2 = checked(EXAMPLES / "gpt2_small.nn")
    head = [g for g in layout(g2).glyphs if g.node == "logits.lm_head"]
    assert head[0].html == "<B>L</B><SUP>lm_head</SUP>"          # bias=false: no +
    assert not any(g.learned for g in d.glyphs if g.kind in ("marker", "softmax", "bar", "dot", "copy"))


def test_residual_add_copy_and_permute():
    ir = checked(EXAMPLES / "resblock.nn")
    d = layout(ir)
    adds = [g for g in d.glyphs if g.kind == "add"]
    assert len(adds) == 4 and all(len(g.consumes) == 2 for g in adds)
    assert any(t.text == "+" and t.cls == "ncd-symbol" for t in d.texts)
    copies = [g for g in d.glyphs if g.kind == "copy"]
    assert len(copies) == 4
    for c in copies:
        outs = [w for w in d.wires if w.src == c.id]
        assert len(outs) == 2 and outs[0].label == outs[1].label
    src = ("model P {\n  input x: [B, T, D]\n  y = permute(x, [0, 2, 1])\n  output z = relu(y)\n}\n")
    ir = nndsl.check(source=src).ir
    d = layout(ir)
    assert not [g for g in d.glyphs if g.node == "y"]                   # permutation: no glyph
    after = sorted((w for w in d.wires if w.tensor == "y:0"), key=lambda w: w.points[-1][1])
    assert [w.label for w in after] == ["B", "D", "T"]


@pytest.mark.parametrize("path", [p for p in ALL if p.stem in ("conv", "resnet18", "unet", "vit_b16")],
                         ids=lambda p: p.stem)
def test_detail_draws_the_window_wedge(path):
    """--detail: a convolution is a wedge on the spatial wires only (stride as a subscript) giving out the
    strided spatial wires and one kernel wire per spatial axis, which meet the channels in a bold L; a
    pool's kernel wires end in Max or 𝔼 and its channels pass by."""
    ir = checked(path)
    d = layout(ir, Options(depth=3, detail=True))
    check_grammar(ir, d)
    wedges = [g for g in d.glyphs if g.kind.endswith("-wedge")]
    assert wedges
    for wg in wedges:
        base = wg.id.split("#")[0]
        node = ir.node(base)
        x = node.outputs[0]
        nd = x.rank - 2
        kernels = sorted((g for g in d.glyphs if g.kind == "kernel" and g.id.startswith(base + "#k")),
                         key=lambda g: g.y0)
        assert len(kernels) == nd
        k = node.recipe.attrs["kernel"]
        assert [g.label.split("=")[1] for g in kernels] == [str(v) for v in (k if isinstance(k, (list, tuple)) else [k] * nd)]
        assert all(wg.x1 == g.x0 for g in kernels)                      # kernel wires leave the wedge
        box = d.glyph(base)
        assert all(abs(g.x1 - box.x0) < 0.01 and box.y0 <= g.y0 <= box.y1 for g in kernels)
        entering = [w for w in d.wires if w.dst == wg.id]
        leaving = [w for w in d.wires if w.src == wg.id]
        assert len(entering) == len(leaving) == nd
        assert [w.axis for w in leaving] == list(ir.node(base).axes[0][2:])          # H′, W′ in order
        assert all(wg.y0 <= w.points[0][1] <= wg.y1 and abs(w.points[0][0] - wg.x1) < 0.01 for w in leaving)
        assert all(w.points[0][1] < box.y0 for w in leaving)               # they run above the L
        s = node.recipe.attrs.get("stride")
        s = s[0] if isinstance(s, (list, tuple)) else s
        assert (f"<SUB>{s}</SUB>" in wg.html) == (s not in (None, 1))
        if wg.kind == "conv-wedge":
            assert box.kind == "linear" and box.learned
            src, port = ir.inputs_of(base)[0]
            chan = [w for w in d.wires if w.dst == base]
            assert [w.axis for w in chan] == [ir.node(src).axes[port][1]]   # the input channels, and only they
            (xa, ya), (xb, yb) = chan[0].points[-4], chan[0].points[-1]
            assert xa <= wg.x0 + 0.01 and xb >= box.x0 - 0.01 and ya == yb > wg.y1   # level, under the wedge
        else:
            assert box.kind == "reduce" and box.label in ("Max", "𝔼") and not box.learned
            assert not [w for w in d.wires if w.dst == base]                 # channels pass by
    assert overlaps(d) == []


def test_merge_labels_are_products_and_bars():
    src = ("model F {\n  input x: [B, C, H, W]\n  output y = rearrange(x, \"b c h w -> b (c h w)\")\n}\n")
    ir = nndsl.check(source=src, C=3, H=28, W=28).ir
    d = layout(ir)
    assert [g.kind for g in d.glyphs] == ["bar"]
    out = [w.label for w in d.wires if w.tensor == "y:0"]
    assert "C·H·W=2352" in out


def test_every_op_draws_without_crashing():
    """Any op: a specific glyph or a labelled box on its own wires, never an exception."""
    from test_ops import CASES, _with_free_batch, spec_for     # one spec per op

    for op in sorted(CASES):
        src, _tensors = spec_for(op)
        for text in (src, _with_free_batch(src)):
            res = nndsl.check(source=text)
            assert res.ok, (op, res.diagnostics)
            d = layout(res.ir, Options())
            check_grammar(res.ir, d)
            assert d.glyphs or op in ("permute", "transpose", "identity"), op


# -- through Graphviz
def svg_of(path, tmp_path, *args) -> str:
    out = tmp_path / "d.svg"
    r = subprocess.run([sys.executable, "-m", "nndsl.cli", "draw", str(path), "-o", str(out), *args],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out.read_text()


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz is not installed")
@pytest.mark.parametrize("name", ["attention", "resblock", "mlp"])
def test_svg_carries_the_classes_and_geometry(name, tmp_path):
    text = svg_of(EXAMPLES / f"{name}.nn", tmp_path)
    root = ET.fromstring(text)
    classes = Counter(c for g in root.iter(f"{SVG}g") for c in (g.get("class") or "").split())
    groups = root.iter(f"{SVG}g")
    wires, ops = [], []
    for g in groups:
        cls = (g.get("class") or "").split()
        if "ncd-wire" in cls:
            path = g.find(f"{SVG}path")
            label = "".join(g.find(f"{SVG}text").itertext())
            nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", path.get("d"))]
            wires.append((label, list(zip(nums[::2], nums[1::2]))))
        if "ncd-op" in cls and "ncd-learned" in cls:
            poly = g.find(f"{SVG}polygon")
            poly = poly if poly is not None else g.find(f"{SVG}ellipse")
            assert float(poly.get("stroke-width", "1")) >= 2
            assert any(t.get("font-weight") == "bold" for t in g.iter(f"{SVG}text"))
            ops.append(g)
        if "ncd-op" in cls and "ncd-learned" not in cls:
            assert all(t.get("font-weight") != "bold" for t in g.iter(f"{SVG}text"))
    ir = checked(EXAMPLES / f"{name}.nn")
    d = layout(ir)
    assert len(wires) == len(d.wires) and ops
    assert sorted(w[0] for w in wires) == sorted(w.label for w in d.wires)
    assert all(pts[-1][0] >= pts[0][0] - 0.01 for _l, pts in wires)     # left to right
    if name == "attention":
        assert classes["ncd-cap"] == 2 and classes["ncd-softmax"] == 1
        assert classes["ncd-dot"] == 4 and classes["ncd-copy"] == 3
    if name == "resblock":
        assert classes["ncd-add"] == 4 and classes["ncd-fence"] == 1 and classes["cluster"] == 1
        assert classes["ncd-sep"] and "stroke-dasharray" in text


def _svg_cubic(d: str) -> list[tuple[float, float]]:
    """Points along an SVG path of cubic pieces (`M x,y C x,y x,y x,y ...`), 12 per piece."""
    nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]
    p = list(zip(nums[::2], nums[1::2]))
    out = [p[0]]
    for i in range(0, len(p) - 3, 3):
        a, b, c, e = p[i:i + 4]
        for k in range(1, 13):
            t = k / 12
            u = 1 - t
            out.append(tuple(u ** 3 * a[j] + 3 * u * u * t * b[j] + 3 * u * t * t * c[j] + t ** 3 * e[j] for j in (0, 1)))
    return out


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz is not installed")
@pytest.mark.parametrize("name,args", [("attention", []), ("resblock", []), ("conv", []), ("mlp", []),
                                       ("gpt2_small", ["--depth", "1"]), ("unet", ["--depth", "1"])])
def test_svg_geometry_wires_pass_by_outside_the_boxes(name, args, tmp_path):
    """Read back from the rendered SVG alone: every wire whose path spans an op box's whole width (it passes
    by) stays above or below the box there, and every wire label lies clear of every other label."""
    root = ET.fromstring(svg_of(EXAMPLES / f"{name}.nn", tmp_path, *args))
    boxes, paths, labels = [], [], []
    for g in root.iter(f"{SVG}g"):
        cls = (g.get("class") or "").split()
        if "ncd-op" in cls:
            poly = g.find(f"{SVG}polygon")
            if poly is not None:
                pts = [tuple(map(float, q.split(","))) for q in poly.get("points").split()]
                xs, ys = [q[0] for q in pts], [q[1] for q in pts]
                boxes.append((g.get("id"), min(xs), min(ys), max(xs), max(ys)))
        if "ncd-wire" in cls:
            paths.append(_svg_cubic(g.find(f"{SVG}path").get("d")))
            t = g.find(f"{SVG}text")
            labels.append((float(t.get("x")), float(t.get("y")), "".join(t.itertext())))
    assert boxes and paths
    passing = 0
    for gid, x0, y0, x1, y1 in boxes:
        for pts in paths:
            xs = [q[0] for q in pts]
            if min(xs) > x0 + 1 or max(xs) < x1 - 1:
                continue                              # enters or leaves the op (or is elsewhere)
            passing += 1
            for x, y in pts:
                if x0 + 1 < x < x1 - 1:
                    assert not (y0 + 0.5 < y < y1 - 0.5), f"a wire passes through {gid} at ({x:.1f}, {y:.1f})"
    assert passing > 0
    # labels (10 pt, centred on x, baseline y): no two intersect
    spans = sorted((x - len(s) * 2.8, x + len(s) * 2.8, y - 8, y, s) for x, y, s in labels)
    for i, a in enumerate(spans):
        for b in spans[i + 1:]:
            if b[0] >= a[1]:
                break
            assert not (a[2] < b[3] and b[2] < a[3]), f"labels {a[4]!r} and {b[4]!r} overlap"


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz is not installed")
def test_outputs_are_byte_stable_and_every_format_renders(tmp_path):
    a = svg_of(EXAMPLES / "gpt2_small.nn", tmp_path)
    b = svg_of(EXAMPLES / "gpt2_small.nn", tmp_path)
    assert a == b
    d = nndsl.draw(EXAMPLES / "conv.nn")
    assert d._repr_svg_().lstrip().startswith("<?xml") and "<svg" in d.svg()
    d.save(tmp_path / "c.png")
    d.save(tmp_path / "c.pdf")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "c.pdf").read_bytes()[:4] == b"%PDF"


def test_missing_graphviz_is_a_clear_error_and_dot_still_works(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))     # no Graphviz programs on the PATH
    exe = [sys.executable, "-m", "nndsl.cli", "draw", str(EXAMPLES / "mlp.nn")]
    r = subprocess.run(exe + ["-o", str(tmp_path / "m.svg")], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "error[E0403]" in r.stderr and "install the `graphviz` package" in r.stderr
    r = subprocess.run(exe + ["-o", str(tmp_path / "m.dot")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    dot = (tmp_path / "m.dot").read_text()
    assert dot.startswith('digraph "MnistMLP"') and 'class="ncd-wire"' in dot


SNAP = Path(__file__).parent / "snapshots"


def model_snapshot(d) -> dict:
    r = lambda v: round(v, 1)     # noqa: E731
    return {
        "size": [r(d.width), r(d.height)],
        "glyphs": [[g.id, g.kind, r(g.x0), r(g.y0), r(g.x1), r(g.y1), g.label] for g in d.glyphs],
        "wires": [[w.label, w.tensor, w.segment, r(w.points[0][0]), r(w.points[0][1]), r(w.points[-1][0]),
                   r(w.points[-1][1]), w.src, w.dst] for w in d.wires],
        "fences": [[f.path, f.title, r(f.x0), r(f.y0), r(f.x1), r(f.y1), f.count] for f in d.fences],
        "seps": len(d.seps),
    }


@pytest.mark.parametrize("name", ["mlp", "conv", "attention"])
def test_layout_snapshots(name):
    """The layout model of three small examples; bless with NNDSL_BLESS=1 after a deliberate change."""
    snap = model_snapshot(layout(checked(EXAMPLES / f"{name}.nn")))
    f = SNAP / f"ncd_{name}.json"
    if os.environ.get("NNDSL_BLESS") or not f.exists():
        SNAP.mkdir(exist_ok=True)
        f.write_text(json.dumps(snap, indent=1, ensure_ascii=False) + "\n")
    assert snap == json.loads(f.read_text())
