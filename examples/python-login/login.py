#!/usr/bin/env python3
"""A login service in Python (standard library only) behind `spillway guard`.

POST /v1/login {"ticket": "..."} validates the ticket with the backend's
POST /v1/validate, called THROUGH the sidecar (--backend is the sidecar's
proxy address), and answers 200 with a token, 401 for an invalid ticket,
or the sidecar's own 503 (X-Spillway-Reason, Retry-After) passed through.
Health is the sidecar's business: this process serves nothing else.
"""
import argparse, base64, hashlib, hmac, json, secrets, signal, threading, time
import urllib.error, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY = secrets.token_bytes(32)  # per process: a demo, not a session store


def token(account):
    exp = int(time.time()) + 3600
    claims = base64.urlsafe_b64encode(json.dumps({"sub": account, "exp": exp}).encode()).rstrip(b"=")
    mac = base64.urlsafe_b64encode(hmac.new(KEY, claims, hashlib.sha256).digest()).rstrip(b"=")
    return (claims + b"." + mac).decode(), exp


class Login(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with the balancer

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        if self.path != "/v1/login":
            return self.answer(404, {"error": "not_found"})
        try:
            n = int(self.headers.get("Content-Length") or 0)
            ticket = json.loads(self.rfile.read(min(n, 8192)))["ticket"] if n <= 8192 else None
        except (ValueError, KeyError, TypeError):
            ticket = None
        if not isinstance(ticket, str) or not ticket:
            return self.answer(400, {"error": "bad_request"})
        req = urllib.request.Request(self.server.backend + "/v1/validate", method="POST",
                                     data=json.dumps({"ticket": ticket}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:  # the sidecar bounds the call (its --timeout); 5 s is a backstop
            with urllib.request.urlopen(req, timeout=5) as resp:
                v = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            reason = e.headers.get("X-Spillway-Reason")
            if e.code == 503 and reason:  # the sidecar's fast answer: pass it on
                return self.answer(503, {"error": reason}, [("X-Spillway-Reason", reason),
                                                            ("Retry-After", e.headers.get("Retry-After", "1"))])
            return self.unavailable()  # the backend failed this call (a 5xx passed on)
        except (OSError, ValueError):
            return self.unavailable()  # the sidecar itself is unreachable, or a broken answer
        if not v.get("valid"):
            return self.answer(401, {"error": "invalid_ticket"})
        tok, exp = token(v["account_id"])
        self.answer(200, {"token": tok, "account_id": v["account_id"], "expires_at": exp})

    def unavailable(self):
        self.answer(503, {"error": "dependency_unavailable"},
                    [("X-Spillway-Reason", "dependency_unavailable"), ("Retry-After", "1")])

    def do_GET(self):
        if self.path == "/v1/login":
            return self.answer(405, {"error": "method_not_allowed"}, [("Allow", "POST")])
        self.answer(404, {"error": "not_found"})

    def log_message(self, *args):
        pass  # one line per request is too many for a demo under load


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:8001", help="service address")
    p.add_argument("--backend", default="http://127.0.0.1:8101", help="the sidecar's proxy URL")
    p.add_argument("--drain", type=float, default=3.0, help="seconds to keep serving after SIGTERM")
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    srv = ThreadingHTTPServer((host, int(port)), Login)
    srv.daemon_threads, srv.backend = True, a.backend.rstrip("/")
    # SIGTERM: the sidecar (stopped at the same time) reports draining at
    # once; keep serving while the balancer takes us out, then stop.
    signal.signal(signal.SIGTERM, lambda *_: threading.Timer(a.drain, srv.shutdown).start())
    print(f"listening on {host}:{srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
