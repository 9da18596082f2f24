"""Rich display in Jupyter: a check's diagnostics as HTML (`CheckResult._repr_html_`), a summary as a
table (`Summary._repr_html_`); diagrams display as SVG (`Drawing._repr_svg_`). Everything a spec holds
(names, messages, source lines) is escaped: a spec is untrusted and its text never becomes markup."""
from __future__ import annotations

from html import escape

_STYLE = ("<style>.nndsl-d{font-family:monospace;white-space:pre;margin:0 0 .6em 0}"
          ".nndsl-error{color:#b00020}.nndsl-warning{color:#8a5a00}.nndsl-ok{color:#1b6e20}"
          ".nndsl-t{border-collapse:collapse;font-family:monospace}.nndsl-t td,.nndsl-t th{padding:1px 8px;"
          "text-align:left}.nndsl-t td.n{text-align:right}</style>")


def check_html(res) -> str:
    from .diagnostics import render
    from .diagnostics.render import visible

    out = [_STYLE]
    if res.ok and res.ir is not None:
        from .backends.summary import fmt_count, totals

        ir = res.ir
        out.append(f"<div class='nndsl-d nndsl-ok'>ok: model <b>{escape(visible(ir.meta.model))}</b>, "
                   f"{fmt_count(totals(ir)['total_params'])} parameters</div>")
        rows = [("input", i.name, i.type.describe()) for i in ir.meta.inputs] + \
            [("output", o.name, ir.node(o.node).outputs[o.port].describe()) for o in ir.meta.outputs]
        out.append("<table class='nndsl-t'>" + "".join(
            f"<tr><td>{k}</td><td>{escape(visible(n))}</td><td>{escape(visible(t))}</td></tr>" for k, n, t in rows)
            + "</table>")
    for d in res.diagnostics:
        cls = "nndsl-error" if d.is_error else "nndsl-warning"
        text = render(d, res.sources, color=False)
        head, _, rest = text.partition("\n")
        out.append(f"<div class='nndsl-d'><span class='{cls}'>{escape(head)}</span>\n{escape(rest)}</div>")
    return "".join(out)


class Summary:
    """A model's per-layer summary: `.rows` (dicts), `.totals`, `str()` the fixed-width table, and an HTML
    table in Jupyter."""

    def __init__(self, ir):
        from .backends.summary import to_dict

        self.ir = ir
        self.data = to_dict(ir)

    @property
    def rows(self) -> list[dict]:
        return self.data["layers"]

    @property
    def totals(self) -> dict:
        from .backends.summary import totals

        return {k: self.data[k] for k in totals(self.ir)}

    def __str__(self) -> str:
        from .backends.summary import fmt_count, table_lines

        return "\n".join(table_lines(self.ir) + [f"total_params: {fmt_count(self.data['total_params'])}"])

    def _repr_html_(self) -> str:
        from .backends.summary import fmt_count
        from .diagnostics.render import visible

        head = "".join(f"<th>{h}</th>" for h in ("layer", "op", "output shape", "params", "FLOPs"))
        body = []
        for r in self.rows:
            flops = fmt_count(r["flops"]) if isinstance(r["flops"], int) else r["flops"]
            body.append(f"<tr><td>{escape(visible(r['name']))}</td><td>{escape(r['op'])}</td>"
                        f"<td>{escape(visible(r['output_shape']))}</td>"
                        f"<td class='n'>{fmt_count(r['params']) if r['params'] else ''}</td>"
                        f"<td class='n'>{escape(flops)}</td></tr>")
        foot = f"<tr><th colspan='3'>total</th><th class='n'>{fmt_count(self.data['total_params'])}</th><th></th></tr>"
        return (_STYLE + f"<div><b>{escape(visible(self.ir.meta.model))}</b></div><table class='nndsl-t'>"
                f"<tr>{head}</tr>{''.join(body)}{foot}</table>")
