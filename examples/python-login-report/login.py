#!/usr/bin/env python3
"""A login service in Python (standard library only) that serves the
instance contract itself, without a sidecar: /livez, /readyz and the
/health report on a health port of its own, the backend's state tracked by
a tiny circuit breaker with a recovery probe (docs/CONTRACT.md).

POST /v1/login {"ticket": "..."} validates the ticket with the backend's
POST /v1/validate and answers 200 with a token, 401 for an invalid ticket,
or a fast 503 dependency_unavailable (X-Spillway-Reason, Retry-After)
while the breaker is open or when the call fails.
"""
import argparse, base64, hashlib, hmac, json, secrets, signal, threading, time
import urllib.error, urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY = secrets.token_bytes(32)


def now():
    return datetime.now(timezone.utc).isoformat()


class Breaker:
    """Opens after `failures` failed calls in a row; while open, GETs the
    probe URL every `interval` s and closes after `successes` in a row."""

    def __init__(self, probe_url, failures=3, interval=0.25, successes=2):
        self.lock, self.probe_url = threading.Lock(), probe_url
        self.failures, self.interval, self.successes = failures, interval, successes
        self.open, self.fails, self.seen, self.since, self.last_error = False, 0, False, now(), ""

    def allow(self):
        with self.lock:
            return not self.open

    def record(self, error=None):
        with self.lock:
            self.seen = True
            if error is None:
                self.fails = 0
                return
            self.fails, self.last_error = self.fails + 1, error
            if not self.open and self.fails >= self.failures:
                self.open, self.since = True, now()

    def status(self):
        with self.lock:
            state = "down" if self.open else ("up" if self.seen else "unknown")
            return {"state": state, "breaker": "open" if self.open else "closed",
                    "since": self.since, "last_error": self.last_error}

    def probe_forever(self):
        ok = 0
        while True:
            time.sleep(self.interval)
            if self.allow():
                ok = 0
                continue
            try:
                with urllib.request.urlopen(self.probe_url, timeout=1) as r:
                    ok = ok + 1 if 200 <= r.status < 300 else 0
            except OSError:
                ok = 0
            if ok >= self.successes:
                with self.lock:
                    self.open, self.fails, self.since, self.last_error = False, 0, now(), ""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, headers=()):
        raw = isinstance(body, bytes)
        data = body if raw else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if raw else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Health(Handler):
    def do_GET(self):
        app = self.server.app
        path = self.path.split("?")[0]  # the long-poll parameters are ignored: no "version"
        if path == "/livez":
            return self.answer(200, b"ok")
        ready = not app.draining
        if path == "/readyz":  # never fails because the backend is down
            return self.answer(200 if ready else 503, b"ok" if ready else b"draining\n")
        if path == "/health":
            return self.answer(200, {"ready": ready, "draining": app.draining,
                                     "phase": "ready" if ready else "draining", "in_flight": app.in_flight,
                                     "dependencies": {"backend": app.breaker.status()}})
        self.answer(404, {"error": "not_found"})


class Login(Handler):
    def do_POST(self):
        if self.path != "/v1/login":
            return self.answer(404, {"error": "not_found"})
        app = self.server.app
        try:
            n = int(self.headers.get("Content-Length") or 0)
            ticket = json.loads(self.rfile.read(n))["ticket"] if n <= 8192 else None
        except (ValueError, KeyError, TypeError):
            ticket = None
        if not isinstance(ticket, str) or not ticket:
            return self.answer(400, {"error": "bad_request"})
        if not app.breaker.allow():  # fail fast while the backend is down
            return self.unavailable()
        with app.lock:
            app.in_flight += 1
        try:
            req = urllib.request.Request(app.backend + "/v1/validate", data=json.dumps({"ticket": ticket}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(req, timeout=app.timeout) as resp:
                v = json.loads(resp.read())
            app.breaker.record()
        except (OSError, ValueError) as e:  # HTTPError (any non-2xx) is an OSError
            app.breaker.record(str(e) or type(e).__name__)
            return self.unavailable()
        finally:
            with app.lock:
                app.in_flight -= 1
        if not v.get("valid"):
            return self.answer(401, {"error": "invalid_ticket"})
        claims = base64.urlsafe_b64encode(json.dumps({"sub": v["account_id"], "exp": int(time.time()) + 3600}).encode())
        mac = base64.urlsafe_b64encode(hmac.new(KEY, claims, hashlib.sha256).digest())
        self.answer(200, {"token": (claims + b"." + mac).decode(), "account_id": v["account_id"]})

    def unavailable(self):
        self.answer(503, {"error": "dependency_unavailable"},
                    [("X-Spillway-Reason", "dependency_unavailable"), ("Retry-After", "1")])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:8001", help="service address")
    p.add_argument("--health-listen", default="127.0.0.1:9001", help="health address")
    p.add_argument("--backend", default="http://127.0.0.1:9000", help="the backend's base URL")
    p.add_argument("--timeout", type=float, default=1.0, help="deadline of a backend call, seconds")
    p.add_argument("--drain", type=float, default=3.0, help="seconds to keep serving after SIGTERM")
    a = p.parse_args()
    app = argparse.Namespace(backend=a.backend.rstrip("/"), timeout=a.timeout, draining=False, in_flight=0,
                             lock=threading.Lock())
    app.breaker = Breaker(app.backend + "/healthz")
    servers = []
    for addr, handler in ((a.listen, Login), (a.health_listen, Health)):
        host, port = addr.rsplit(":", 1)
        srv = ThreadingHTTPServer((host, int(port)), handler)
        srv.daemon_threads, srv.app = True, app
        servers.append(srv)
    threading.Thread(target=app.breaker.probe_forever, daemon=True).start()
    threading.Thread(target=servers[1].serve_forever, daemon=True).start()

    def drain(*_):  # readiness fails at once; serve on, then stop
        app.draining = True
        threading.Timer(a.drain, servers[0].shutdown).start()

    signal.signal(signal.SIGTERM, drain)
    (h, p), (hh, hp) = servers[0].server_address[:2], servers[1].server_address[:2]
    print(f"listening on {h}:{p} health {hh}:{hp}", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
