"""A minimal Language Server Protocol client over stdio (JSON-RPC with Content-Length framing), enough to
drive `nndsl lsp` as an editor does: requests with ids, notifications, and the server's notifications
(publishDiagnostics) collected as they arrive."""
from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path


class Client:
    def __init__(self, cmd=None):
        self.proc = subprocess.Popen(cmd or [sys.executable, "-m", "nndsl", "lsp"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.messages: "queue.Queue[dict]" = queue.Queue()
        self.pending: list[dict] = []
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        out = self.proc.stdout
        while True:
            headers = {}
            while True:
                line = out.readline()
                if not line:
                    return
                line = line.decode("ascii").strip()
                if not line:
                    break
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            body = out.read(int(headers["content-length"]))
            self.messages.put(json.loads(body))

    def _send(self, msg: dict):
        data = json.dumps(msg).encode("utf-8")
        self.proc.stdin.write(f"Content-Length: {len(data)}\r\n\r\n".encode("ascii") + data)
        self.proc.stdin.flush()

    def request(self, method: str, params, timeout: float = 60):
        self.next_id += 1
        rid = self.next_id
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        kept = []
        try:
            while True:
                m = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
                if m.get("id") == rid and "method" not in m:
                    if "error" in m:
                        raise RuntimeError(m["error"])
                    return m.get("result")
                kept.append(m)
        finally:
            self.pending += kept

    def notify(self, method: str, params):
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def wait(self, method: str, pred=lambda p: True, timeout: float = 60) -> dict:
        """The next notification `method` whose params satisfy `pred` (earlier ones are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            while self.pending:
                m = self.pending.pop(0)
                if m.get("method") == method and pred(m.get("params")):
                    return m["params"]
            m = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            if m.get("method") == method and pred(m.get("params")):
                return m["params"]

    def initialize(self, root: Path):
        self.request("initialize", {"processId": None, "rootUri": root.as_uri(), "capabilities": {
            "textDocument": {"hover": {"contentFormat": ["markdown"]},
                             "documentSymbol": {"hierarchicalDocumentSymbolSupport": True},
                             "publishDiagnostics": {"relatedInformation": True}}}})
        self.notify("initialized", {})

    def close(self):
        try:
            self.request("shutdown", None, timeout=10)
            self.notify("exit", None)
            self.proc.wait(timeout=10)
        except Exception:      # noqa: BLE001
            self.proc.kill()
        finally:
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                try:
                    f.close()
                except Exception:  # noqa: BLE001
                    pass
