# SPDX-License-Identifier: MIT
"""The deployment stack, natively: PostgreSQL with the roles postgres/initdb.d makes,
`tgring migrate` as the owner role, tgring serving as the data role, and nginx with the
repository's configuration rendered by scripts/render-nginx-conf, over HTTPS with a test CA.

Through nginx: a webhook is stored and answered 200; a wrong secret gets 401; a GET on the
webhook is refused; /health passes through and /metrics does not; nginx keeps its upstream
connections alive (tgring's accepted-connection count barely moves over many requests); with
the address filter on (Telegram's ranges, X-Forwarded-For believed from 127.0.0.1 only), an
address outside the ranges is refused and one inside passes; with tgring stopped nginx answers
503 + Retry-After, and tgring restarted on the same port serves again without touching nginx.
The compose form (tgring by name through a resolver, here a small DNS server of the test's):
nginx starts while the name does not resolve, answers 503 + Retry-After, and follows the name
once it resolves. Last, pg_dump of the database and pg_restore into a fresh one give the same
updates and outbox rows."""

import http.client
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.parse

import botapi_helpers as bh
import harness

RENDER = os.path.join(harness.SRC, "scripts", "render-nginx-conf")
ROLES = os.path.join(harness.SRC, "postgres", "initdb.d", "10-tgring-roles.sh")
PATH = "/webhook/telegram"
TELEGRAM_ADDR = "149.154.167.220"   # inside 149.154.160.0/20
OTHER_ADDR = "203.0.113.9"          # TEST-NET-3, outside Telegram's ranges


class FakeDns:
    """Answers A queries for one name with 127.0.0.1 while `on`, NXDOMAIN otherwise."""

    def __init__(self, name):
        self.name = name.lower()
        self.on = False
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped:
            try:
                q, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(q) < 17:
                continue
            i, labels = 12, []
            while i < len(q) and q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
                i += 1 + q[i]
            question = q[12:i + 5]
            qtype = struct.unpack("!H", q[i + 1:i + 3])[0] if i + 3 <= len(q) else 0
            self.queries += 1
            hit = self.on and ".".join(labels).lower() == self.name and qtype == 1
            flags = 0x8180 if hit else 0x8183
            reply = q[:2] + struct.pack("!HHHHH", flags, 1, 1 if hit else 0, 0, 0) + question
            if hit:
                reply += struct.pack("!HHHIH", 0xC00C, 1, 1, 1, 4) + socket.inet_aton("127.0.0.1")
            self.sock.sendto(reply, peer)

    def close(self):
        self.stopped = True
        self.sock.close()


class Front:
    """nginx run natively from a rendering of nginx/tgring.conf."""

    def __init__(self, h, name, certs, upstream, extra):
        self.dir = bh._mkdtemp(h, name)
        self.port = harness.free_port()
        argv = [RENDER, "--prefix", self.dir, "--listen", f"127.0.0.1:{self.port}",
                "--upstream", upstream, "--cert", os.path.join(certs, "server.pem"),
                "--key", os.path.join(certs, "server.key")] + extra
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError(f"render-nginx-conf failed:\n{p.stderr}")
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            # As root, nginx's workers would run as nobody, who cannot read the test key.
            f.write(("user root root;\n" if harness.is_root() else "") + p.stdout)
        self.text = p.stdout
        self.logfile = h.logpath(f"{name}.log")
        h.sweep.exclude_port(self.port, "nginx (its own answers and tgring's through it)")
        self.proc = bh._spawn(["nginx", "-e", os.path.join(self.dir, "start.log"), "-p",
                               self.dir, "-c", self.conf, "-g", "daemon off;"], self.logfile,
                              stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start:\n" + self.errors())

    def errors(self):
        out = []
        for f in ("start.log", "error.log"):
            out.append(harness.tail(os.path.join(self.dir, f), 20))
        return "\n".join(out)

    def stop(self):
        return bh._stop(self.proc)


class Client:
    """A kept-alive HTTPS connection to nginx that trusts the test CA."""

    def __init__(self, port, ca):
        self.ctx = ssl.create_default_context(cafile=ca)
        self.port = port
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        """(status, headers dict lowercased, body bytes); reconnects once if nginx closed."""
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=15,
                                                        context=self.ctx)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                data = r.read()
                hdrs = {k.lower(): v for k, v in r.getheaders()}
                if hdrs.get("connection", "").lower() == "close":
                    self.close()
                return r.status, hdrs, data
            except (http.client.HTTPException, ConnectionError, ssl.SSLError):
                self.close()
                if attempt:
                    raise

    def post(self, update_id, secret, xff=None):
        body, _ = harness.make_update(update_id, chat_id=1000 + update_id % 7)
        headers = {"Content-Type": "application/json",
                   "X-Telegram-Bot-Api-Secret-Token": secret}
        if xff:
            headers["X-Forwarded-For"] = xff
        return self.request("POST", PATH, body, headers)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def url_with(pg, user, password):
    return (f"postgresql://{user}:{urllib.parse.quote(password, safe='')}@127.0.0.1:{pg.port}"
            "/tgring")


def table_digest(pg, db):
    """Count and digest of every updates and outbox row, in key order."""
    return pg.psql("SELECT (SELECT count(*) FROM updates), (SELECT md5(coalesce(string_agg("
                   "u::text, '|' ORDER BY update_id), '')) FROM updates u), "
                   "(SELECT count(*) FROM outbox), (SELECT md5(coalesce(string_agg("
                   "o::text, '|' ORDER BY id), '')) FROM outbox o)", db=db)[0]


def connections_total(srv):
    return harness.metric(srv.metrics(), "tgring_http_connections_total") or 0


async def main(h):
    t = h.t
    if not os.path.exists("/usr/sbin/nginx") and subprocess.run(
            ["sh", "-c", "command -v nginx"], capture_output=True).returncode != 0:
        t.skip("the stack through nginx", "nginx not installed (apt-get install nginx-light)")
        return
    certs = bh.certs(h)
    ca = os.path.join(certs, "ca.pem")

    # PostgreSQL with the stack's roles, made by the postgres image's init script.
    pg = h.postgres(password=harness.random_password())
    owner_pw, app_pw = harness.random_password(), harness.random_password()
    owner_url, app_url = url_with(pg, "tgring_owner", owner_pw), url_with(pg, "tgring_app", app_pw)
    files = {}
    for name, url in (("database_url_migrate", owner_url), ("database_url", app_url)):
        files[name] = os.path.join(h.workdir, name)
        with open(files[name], "w") as f:
            f.write(url + "\n")
        h.sweep.add("database password", urllib.parse.unquote(url.split(":")[2].split("@")[0]))
    env = dict(os.environ, POSTGRES_USER="postgres", POSTGRES_DB="tgring", PGHOST=pg.sockdir,
               PGPORT=str(pg.port), TGRING_OWNER_URL_FILE=files["database_url_migrate"],
               TGRING_APP_URL_FILE=files["database_url"])
    p = subprocess.run(["bash", ROLES], env=env, capture_output=True, text=True, timeout=60)
    t.eq(p.returncode, 0, "postgres/initdb.d/10-tgring-roles.sh makes the roles",
         p.stdout + p.stderr)
    t.ok(owner_pw not in p.stdout + p.stderr and app_pw not in p.stdout + p.stderr,
         "it prints no password")
    h.migrate(owner_url)
    t.eq(pg.scalar("SELECT tableowner FROM pg_tables WHERE tablename = 'updates'"),
         "tgring_owner", "migrate ran as the owner role: it owns the tables")
    denied = subprocess.run(
        ["psql", "-X", "-q", "-d", app_url, "-c", "CREATE TABLE not_allowed (x int)"],
        capture_output=True, text=True, timeout=30)
    t.ok(denied.returncode != 0 and "permission denied" in denied.stderr,
         "the data role cannot create a table", denied.stderr)

    secret = harness.random_secret()
    tg_port = harness.free_port()
    serve_env = {"DATABASE_URL": app_url, "TELEGRAM_WEBHOOK_SECRET": secret,
                 "TGRING_LISTEN": f"127.0.0.1:{tg_port}"}
    srv = h.tgring(serve_env, name="tgring-a")
    t.ok(srv.wait_ready(30), "tgring serves as the data role (ready)", srv.tail(10))

    # nginx from the repository's template: tgring at a fixed address (a kept-alive pool),
    # X-Forwarded-For believed from 127.0.0.1, Telegram's ranges only.
    front = Front(h, "nginx-ip", certs, f"127.0.0.1:{tg_port}", ["--real-ip-from", "127.0.0.1"])
    c = Client(front.port, ca)

    status, _, _ = c.post(1, secret, TELEGRAM_ADDR)
    t.eq(status, 200, "a webhook from a Telegram address is answered 200")
    t.eq(pg.scalar("SELECT count(*) FROM updates WHERE update_id = 1"), "1", "and it is stored")
    status, _, _ = c.post(2, "wrong" + secret[5:], TELEGRAM_ADDR)
    t.eq(status, 401, "a wrong secret gets 401")
    status, _, _ = c.request("GET", PATH, headers={"X-Forwarded-For": TELEGRAM_ADDR})
    t.ok(status in (403, 405), f"a GET on the webhook is refused ({status})")
    status, _, body = c.request("GET", "/health/ready")
    t.eq(status, 200, "/health/ready passes through", body)
    status, _, body = c.request("GET", "/health/live")
    t.eq(status, 200, "/health/live passes through", body)
    status, _, _ = c.request("GET", "/metrics")
    t.eq(status, 404, "/metrics is not served to the outside")

    # The address filter, on the client's address as the real-IP module sets it.
    status, _, _ = c.post(3, secret, OTHER_ADDR)
    t.eq(status, 403, f"X-Forwarded-For {OTHER_ADDR} (outside Telegram's ranges): 403")
    status, _, _ = c.post(4, secret)
    t.eq(status, 403, "no X-Forwarded-For (the client is 127.0.0.1): 403")
    status, _, _ = c.post(5, secret, "91.108.4.77")
    t.eq(status, 200, "X-Forwarded-For 91.108.4.77 (inside 91.108.4.0/22): 200")
    t.eq(pg.scalar("SELECT count(*) FROM updates WHERE update_id IN (3, 4)"), "0",
         "the refused ones never reached tgring")

    # Keep-alive upstream: many requests, from several client connections, over few of
    # tgring's connections. Each metrics read is one connection of its own.
    before = connections_total(srv)
    n = 30
    oks = 0
    for i in range(n):
        if i % 10 == 0:
            c.close()
        oks += c.post(100 + i, secret, TELEGRAM_ADDR)[0] == 200
    after = connections_total(srv)
    t.eq(oks, n, f"{n} more updates through nginx, all 200")
    t.ok(after - before <= 3, f"tgring accepted {after - before:.0f} connections for them "
         "(nginx keeps its upstream connections alive; one is this metrics read)")

    # tgring down: nginx answers 503 + Retry-After; back on the same port: it serves again.
    t.eq(srv.stop(), 0, "tgring stops cleanly")
    status, hdrs, _ = c.post(200, secret, TELEGRAM_ADDR)
    t.ok(status == 503 and hdrs.get("retry-after"),
         f"tgring stopped: nginx answers {status} with Retry-After {hdrs.get('retry-after')}")
    srv = h.tgring(serve_env, name="tgring-b")
    t.ok(srv.wait_ready(30), "tgring restarted on the same port", srv.tail(10))
    status, _, _ = c.post(201, secret, TELEGRAM_ADDR)
    t.eq(status, 200, "nginx, untouched, reaches it again: 200")
    t.eq(front.proc.poll(), None, "that nginx ran throughout")

    # The compose form: tgring by name, through a resolver, re-resolved at run time.
    dns = FakeDns("tgring.test")
    try:
        named = Front(h, "nginx-named", certs, f"tgring.test:{tg_port}",
                      ["--resolver", f"127.0.0.1:{dns.port}", "--allow-all"])
        t.ok("proxy_pass http://$tgring_upstream;" in named.text,
             "a named upstream is rendered as a variable proxy_pass with a resolver")
        t.ok(named.proc.poll() is None, "nginx starts while the name does not resolve")
        cn = Client(named.port, ca)
        status, hdrs, _ = cn.post(300, secret)
        t.ok(status == 503 and hdrs.get("retry-after"),
             f"unresolved: {status} with Retry-After {hdrs.get('retry-after')}",
             named.errors())
        dns.on = True
        deadline, status = time.monotonic() + 20, None
        while time.monotonic() < deadline:
            status = cn.post(301, secret)[0]
            if status == 200:
                break
            time.sleep(0.5)
        t.eq(status, 200, "once the name resolves nginx follows it (no reload)", named.errors())
        t.ok(dns.queries >= 2, f"nginx asked the resolver at run time ({dns.queries} queries)")
        cn.close()
        named.stop()
    finally:
        dns.close()
    c.close()

    # Backups: pg_dump and a restore into a fresh database round-trip updates and outbox rows.
    bh.insert_rows(pg, [(1000 + i, "sendMessage", bh.message(1000 + i, f"m{i}", "ünïcode"))
                        for i in range(5)])
    t.eq(srv.stop(), 0, "tgring stops cleanly before the backup")
    dump = os.path.join(h.workdir, "tgring.dump")
    bindir = harness.pg_bindir()
    p = subprocess.run([os.path.join(bindir, "pg_dump"), "-h", pg.sockdir, "-p", str(pg.port),
                        "-U", "postgres", "-d", "tgring", "-Fc", "-f", dump],
                       capture_output=True, text=True, timeout=120)
    t.eq(p.returncode, 0, "pg_dump -Fc of the database", p.stderr)
    pg.createdb("tgring_restore")
    p = subprocess.run([os.path.join(bindir, "pg_restore"), "-h", pg.sockdir, "-p",
                        str(pg.port), "-U", "postgres", "-d", "tgring_restore",
                        "--exit-on-error", dump], capture_output=True, text=True, timeout=120)
    t.eq(p.returncode, 0, "pg_restore into a fresh database", p.stderr)
    orig, copy = table_digest(pg, "tgring"), table_digest(pg, "tgring_restore")
    # Stored: 1, 5, 100..129, 201 and 301; the bot's replies and the 5 rows above.
    t.ok(int(orig[0]) == 34 and int(orig[2]) >= 5,
         f"the original holds {orig[0]} updates (34 sent) and {orig[2]} outbox rows")
    t.eq(copy, orig, "the restored updates and outbox rows are the same, row for row")
    t.eq(pg.scalar("SELECT tableowner FROM pg_tables WHERE tablename = 'outbox'",
                   db="tgring_restore"), "tgring_owner", "with their owner")
    front.stop()


if __name__ == "__main__":
    bh.run(main)
