"""The language server on a keystroke: `nndsl lsp` driven over stdio by the tests' client; GPT-2 small is
opened, then edited one character at a time; each edit is timed until its diagnostics arrive, and the
server's resident memory is read before and after the edits.
Targets: a keystroke answers within 150 ms (median); memory stays flat (a check used to leave about 1 MB
behind in reference cycles, never collected)."""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from lsp_client import Client  # noqa: E402


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(keystrokes: int = 100) -> dict:
    c = Client()
    path = ROOT / "examples" / ".bench-lsp-gpt2.nn"
    try:
        c.initialize(ROOT)
        text = (ROOT / "examples" / "gpt2_small.nn").read_text()
        path.write_text(text)
        uri = path.as_uri()
        t = time.perf_counter()
        c.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "nn", "version": 1,
                                                           "text": text}})
        c.wait("textDocument/publishDiagnostics", lambda p: p["uri"] == uri)
        first = time.perf_counter() - t
        rss_open = _rss_mb(c.proc.pid)
        times = []
        for k in range(keystrokes):                 # a space typed, then deleted, and so on
            edited = text.replace("output logits", "output  logits", 1) if k % 2 == 0 else text
            t = time.perf_counter()
            c.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": k + 2},
                                                "contentChanges": [{"text": edited}]})
            c.wait("textDocument/publishDiagnostics", lambda p: p["uri"] == uri and p.get("version") == k + 2)
            times.append(time.perf_counter() - t)
        hover_t = time.perf_counter()
        c.request("textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 5, "character": 10}})
        hover_t = time.perf_counter() - hover_t
        rss_end = _rss_mb(c.proc.pid)
    finally:
        c.close()
        path.unlink(missing_ok=True)
    med = statistics.median(times)
    print("language server (nndsl lsp over stdio), GPT-2 small")
    print(f"  open: {first * 1e3:.0f} ms to diagnostics (first check, standard library parsed)")
    print(f"  keystroke to diagnostics: {med * 1e3:.0f} ms median, {max(times) * 1e3:.0f} ms worst of {keystrokes}"
          f"   (target <= 150 ms)")
    print(f"  hover: {hover_t * 1e3:.0f} ms")
    print(f"  server memory: {rss_open:.0f} MB after the open, {rss_end:.0f} MB after {keystrokes} keystrokes "
          f"({(rss_end - rss_open) / keystrokes * 1e3:+.0f} kB per keystroke)   (target: flat)")
    return {"open": first, "keystroke": med, "hover": hover_t, "rss_open": rss_open, "rss_end": rss_end}


if __name__ == "__main__":
    main()
