# SPDX-License-Identifier: MIT
"""Pieces the sending tests share: the Bot API stand-in (tests/standin/botapi.py)
and a native nginx in front of it as processes of the test, the test
certificates, outbox rows in and out of PostgreSQL, and a check, at a point
the test chooses, that no captured output of tgring holds a secret.

Use run(main) instead of harness.run(main): it stops the stand-ins and nginx
that the test started, also when the test fails, before the harness stops
tgring and PostgreSQL.
"""

import asyncio
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import string
import subprocess
import time
import urllib.error
import urllib.request

import harness

STANDIN = os.path.join(harness.SRC, "tests", "standin", "botapi.py")
MKCERTS = os.path.join(harness.SRC, "tests", "standin", "mkcerts.sh")
PYTHON = "/usr/bin/python3"

# Processes this module started, stopped by run() at the end, and its
# temporary directories, removed then (unless TGRING_KEEP_LOGS=1).
_procs = []
_dirs = []


def _mkdtemp(h, what):
    d = h.mkdtemp(what)
    _dirs.append(d)
    return d


def random_token():
    """A well-formed bot token unlike any other, so that a scan for it cannot
    match by chance: <digits>:<35 chars of A-Za-z0-9_->."""
    alphabet = string.ascii_letters + string.digits + "_-"
    return "%d:%s" % (random.randrange(10**8, 10**10),
                      "".join(random.choice(alphabet) for _ in range(35)))


def certs(h):
    """Makes the test certificates (mkcerts.sh) once per test; returns their directory."""
    if getattr(h, "_send_certs", None) is None:
        d = _mkdtemp(h, "certs")
        p = subprocess.run(["sh", MKCERTS, d], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"mkcerts.sh failed:\n{p.stdout}{p.stderr}")
        h._send_certs = d
    return h._send_certs


def _spawn(argv, logpath, **kw):
    log = open(logpath, "ab")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=log,
                                preexec_fn=harness._die_with_parent, **kw)
    finally:
        log.close()
    _procs.append(proc)
    return proc


def _stop(proc, timeout=10):
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


class StandIn:
    """One botapi.py process: the API on `port`, its control API on `control`."""

    def __init__(self, h, token, cert="server", plain=False, extra=(), name="botapi"):
        self.h = h
        self.token = token
        self.logfile = h.logpath(name + ".log")
        self.record = h.logpath(name + "-calls.jsonl")
        argv = [PYTHON, STANDIN, "--token", token, "--record", self.record]
        if plain:
            argv.append("--plain")
        else:
            d = certs(h)
            argv += ["--cert", os.path.join(d, cert + ".pem"),
                     "--key", os.path.join(d, cert + ".key")]
        argv += list(extra)
        self.proc = _spawn(argv, self.logfile, stdout=subprocess.PIPE)
        line = b""
        deadline = time.monotonic() + 20
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                ch = os.read(self.proc.stdout.fileno(), 256)
                if not ch:
                    break
                line += ch
        parts = line.decode().split()
        if len(parts) != 3 or parts[0] != "ready":
            raise RuntimeError(f"the stand-in did not start ({line!r}):\n"
                               f"{harness.tail(self.logfile)}")
        self.port, self.control = int(parts[1]), int(parts[2])
        self.tls = not plain
        # Not tgring's output, so never swept for secrets: the token is in the
        # path of every call the stand-in serves, by design of the Bot API. Its
        # log and record are not among h.logs; its answers are excluded here.
        for port in (self.port, self.control):
            h.sweep.exclude_port(port, "the Bot API stand-in")

    @property
    def url(self):
        """TELEGRAM_API_URL for tgring (the certificates name localhost)."""
        return f"https://localhost:{self.port}" if self.tls else f"http://127.0.0.1:{self.port}"

    def _ctl(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.control}{path}", data=data,
                                     method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"stand-in control {method} {path}: {e.code} {e.read()!r}")

    def calls(self, method=None):
        """The recorded calls (oldest first), optionally only those of `method`."""
        out = self._ctl("GET", "/calls")
        if method is not None:
            out = [c for c in out if (c.get("method") or "").lower() == method.lower()]
        return out

    def stats(self):
        return self._ctl("GET", "/stats")

    def behave(self, *modes):
        self._ctl("POST", "/behave", list(modes))

    def behaviours_left(self):
        return self._ctl("GET", "/behave")

    def clear_behaviours(self):
        self._ctl("POST", "/behave/clear", None)

    def set_webhook_info(self, **fields):
        self._ctl("POST", "/webhook", fields)

    def reset(self):
        self._ctl("POST", "/reset", None)

    def stop(self):
        return _stop(self.proc)


def setup(h, **standin):
    """What most sending tests start with: a fresh token and webhook secret, a
    migrated PostgreSQL that tgring logs in to with a password (so that the
    harness's sweep looks for it too) and a stand-in for that token
    (`standin`: StandIn's options). Returns (token, secret, pg, api)."""
    token = random_token()
    secret = harness.random_secret()
    pg = h.postgres(password=harness.random_password())
    h.migrate(pg.url())
    return token, secret, pg, StandIn(h, token, **standin)


def send_env(h, pg, api, token, **extra):
    """serve's environment for a tgring that sends to stand-in `api`."""
    env = h.serve_env(pg, TELEGRAM_BOT_TOKEN=token, TELEGRAM_API_URL=api.url,
                      TELEGRAM_CA_FILE=os.path.join(certs(h), "ca.pem"), LOG_FORMAT="json")
    env.update({k: str(v) for k, v in extra.items()})
    return env


async def start_sending(h, what="", **extra):
    """setup(), then a tgring that sends to the stand-in (send_env() with
    `extra`), checked ready and waited for until it has called getMe.
    Returns (token, secret, pg, api, srv)."""
    token, secret, pg, api = setup(h)
    srv = h.tgring(send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret, **extra))
    h.t.ok(srv.wait_ready(30), f"tgring is ready{what}")
    await wait_for(lambda: api.calls("getMe"), 15)
    return token, secret, pg, api, srv


# ---- outbox rows ---------------------------------------------------------------


def sql_str(s):
    """A SQL string literal (standard_conforming_strings is on)."""
    return "'" + s.replace("'", "''") + "'"


def insert_rows(pg, rows):
    """Inserts (chat_id, method, body dict or text) rows in one statement, in
    order; returns their ids in the same order."""
    if not rows:
        return []
    values = []
    for chat, method, body in rows:
        text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False,
                                                             separators=(",", ":"))
        values.append(f"({int(chat)}, {sql_str(method)}, {sql_str(text)})")
    out = pg.psql("INSERT INTO outbox (chat_id, method, body) VALUES " + ", ".join(values) +
                  " RETURNING id")
    return [int(r[0]) for r in out]


def message(chat, marker, text=None, **more):
    """A sendMessage body whose text carries `marker`, to find its calls again."""
    body = {"chat_id": chat, "text": f"{text or 'message'} [{marker}]"}
    body.update(more)
    return body


class PgDb:
    """A Postgres whose psql() and scalar() go to database `db`, for a test
    with several databases in one cluster."""

    def __init__(self, pg, db):
        self.pg, self.db = pg, db

    def psql(self, sql, db=None, check=True):
        return self.pg.psql(sql, db=self.db, check=check)

    def scalar(self, sql, db=None):
        return self.pg.scalar(sql, db=self.db)


def rows(pg, where="true"):
    """Outbox rows as dicts: id, chat_id, method, body, attempts, last_error,
    sent (bool), failed (bool), claimed (bool)."""
    # Hex: harness's psql() splits lines with str.splitlines(), which also
    # splits at U+2028 and the like inside a body or an error text.
    out = pg.psql("SELECT id, chat_id, method, encode(convert_to(body, 'UTF8'), 'hex'), "
                  "attempts, encode(convert_to(coalesce(last_error, ''), 'UTF8'), 'hex'), "
                  "sent_at IS NOT NULL, failed_at IS NOT NULL, claimed_until IS NOT NULL "
                  f"FROM outbox WHERE {where} ORDER BY id")
    return [{"id": int(r[0]), "chat_id": int(r[1]), "method": r[2],
             "body": bytes.fromhex(r[3]).decode(), "attempts": int(r[4]),
             "last_error": bytes.fromhex(r[5]).decode(), "sent": r[6] == "t",
             "failed": r[7] == "t", "claimed": r[8] == "t"} for r in out]


def pending(pg):
    """Rows neither sent nor failed."""
    return int(pg.scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND "
                         "failed_at IS NULL"))


async def wait_for(cond, timeout, step=0.1):
    """Polls cond() until it is true or `timeout` s passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= deadline:
            return v
        await asyncio.sleep(step)


def calls_by_marker(calls, markers):
    """{marker: [the calls whose body's text ends in "[marker]"]}, oldest first."""
    out = {m: [] for m in markers}
    for c in calls:
        body = c.get("body")
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.endswith("]") or "[" not in text:
            continue
        m = text[text.rindex("[") + 1:-1]
        if m in out:
            out[m].append(c)
    return out


def log_events(text):
    """The JSON log lines of a tgring log as dicts (other lines skipped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


# ---- nginx -----------------------------------------------------------------------


class Nginx:
    """A native nginx (OpenSSL) terminating TLS 1.2 with the test CA's
    server.pem on 127.0.0.1:<port>, proxying to 127.0.0.1:<upstream> with
    keep-alive on both sides."""

    def __init__(self, h, upstream_port):
        self.dir = _mkdtemp(h, "nginx")
        d = certs(h)
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        self.port = harness.free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        user = "user root root;\n" if harness.is_root() else ""
        with open(conf, "w") as f:
            f.write(f"""{user}worker_processes 1;
error_log {self.dir}/error.log info;
pid {self.dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    log_format conns 'conn $connection $connection_requests $ssl_session_reused '
                     '$ssl_protocol $ssl_cipher $status $request_length';
    access_log {self.dir}/access.log conns;
    client_body_temp_path {self.dir}/tmp/body;
    proxy_temp_path {self.dir}/tmp/proxy;
    fastcgi_temp_path {self.dir}/tmp/fastcgi;
    uwsgi_temp_path {self.dir}/tmp/uwsgi;
    scgi_temp_path {self.dir}/tmp/scgi;
    keepalive_timeout 60s;
    keepalive_requests 100000;
    ssl_protocols TLSv1.2;
    ssl_session_cache shared:SSL:1m;
    upstream botapi {{
        server 127.0.0.1:{upstream_port};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{self.port} ssl;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        location / {{
            proxy_pass http://botapi;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}
}}
""")
        self.logfile = h.logpath("nginx.log")
        h.sweep.exclude_port(self.port, "nginx in front of the Bot API stand-in")
        self.proc = _spawn(["nginx", "-e", os.path.join(self.dir, "start.log"), "-p", self.dir,
                            "-c", conf, "-g", "daemon off;"], self.logfile,
                           stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start:\n" + harness.tail(self.logfile) + "\n" +
                           harness.tail(os.path.join(self.dir, "start.log")) + "\n" +
                           harness.tail(os.path.join(self.dir, "error.log")))

    def access_log(self):
        try:
            with open(os.path.join(self.dir, "access.log")) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        return _stop(self.proc)


# ---- the secrets scan --------------------------------------------------------------


def scan_secrets(h, secrets, extra_texts=()):
    """Stops every tgring the test started (so that their last lines are in),
    then checks now, as the harness does again at the end, that no captured
    output of tgring holds a secret: those the harness knows, `secrets`, and
    in `extra_texts` too (e.g. commands' stdout)."""
    for p in h.procs:
        p.stop(timeout=15)
    for s in secrets:
        h.sweep.add("bot token" if re.match(r"^\d+:", s or "") else "secret", s)
    for i, text in enumerate(extra_texts):
        h.sweep.capture(f"output {i} given to the scan", text)
    h.sweep.report(h.t)


def run(main):
    """harness.run(main), stopping this module's processes when main ends."""
    async def wrapped(h):
        try:
            await main(h)
        finally:
            while _procs:
                _stop(_procs.pop())
            if os.environ.get("TGRING_KEEP_LOGS") != "1":
                while _dirs:
                    shutil.rmtree(_dirs.pop(), ignore_errors=True)
    harness.run(wrapped, name=None)
