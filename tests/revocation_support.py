"""A fake revocation endpoint for test_revocation.py and e2e/test_revocation.py (no tests here).

`FakeRevoker()` listens on 127.0.0.1 (any path), records every POST (`.requests`: path, headers, parsed JSON) and
answers from a script: `.answers` is a list of `(status, headers)` used in order, then `.default` (202, as
GitHub's credential revocation API). `.answer(fn)` instead decides per request: `fn(credentials) -> (status,
headers)`. `.credentials(status=None)`: every credential sent (in requests answered with `status`).
"""

from __future__ import annotations

import http.server
import json
import threading
from dataclasses import dataclass


@dataclass
class Posted:
    path: str
    headers: dict[str, str]
    body: dict
    status: int

    @property
    def credentials(self) -> list[str]:
        return [c if isinstance(c, str) else c["credential"] for c in self.body.get("credentials", [])]


class FakeRevoker:
    def __init__(self, default: int = 202) -> None:
        self.default = default
        self.answers: list[tuple[int, dict]] = []
        self.decide = None
        self.requests: list[Posted] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else {}
                creds = Posted("", {}, body, 0).credentials
                with outer.lock:
                    if outer.decide is not None:
                        status, headers = outer.decide(creds)
                    elif outer.answers:
                        status, headers = outer.answers.pop(0)
                    else:
                        status, headers = outer.default, {}
                    outer.requests.append(Posted(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                 body, status))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/credentials/revoke"
        threading.Thread(target=self.httpd.serve_forever, daemon=True, name="fake-revoker").start()

    def answer(self, fn) -> None:
        self.decide = fn

    def credentials(self, status: int | None = None) -> list[str]:
        with self.lock:
            return [c for r in self.requests if status is None or r.status == status for c in r.credentials]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
