# SPDX-License-Identifier: MIT
"""The benchmark peers (bench/peers/) do tgring's ingestion work: installed by
bench/peers/install (a peer that cannot be installed is a TAP skip with the
installer's reason), each started through its own run script against a real,
throwaway PostgreSQL (tests/integration/harness.py).

grammy and aiohttp: an update posted with the right secret is answered 200
and its row holds the exact body bytes and the extracted columns (for several
update types); the same update again is 200 and still one row, with the first
body; a wrong or missing secret is 401 (grammY's http adapter answers 401 too)
and stores nothing; malformed JSON is a 4xx and stores nothing; an INSERT
that fails is answered 500; SIGTERM stops the peer with exit 0. nginx: POSTs on one keep-alive connection are 200.
pgbench: 2 s with 2 clients x pipelines of 4 inserts leave 4 rows per
transaction pgbench counted, each with the given body and its columns; open
loop at 400 rows/s it reports the window's transactions and ordered latency
percentiles, and stores their rows.
"""

import json
import os
import select
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
import harness  # noqa: E402

PEERS = os.path.join(harness.SRC, "bench", "peers")
PATH = "/webhook/telegram"


class Peer:
    """One peer's run script with its stderr in a file; shaped like
    harness.Tgring (name, proc, stop, tail) so that the Harness stops it and
    shows its log when the test fails."""

    def __init__(self, h, name, args):
        self.h = h
        self.name = name
        self.args = [os.path.join(PEERS, name, "run")] + [str(a) for a in args]
        self.proc = None
        self.logfile = h.logpath(f"peer-{name}.log")
        h.logs.append((f"peer {name}", self.logfile))

    def start(self, timeout=30):
        """Starts it and waits for its `listening PORT` line: the line, or
        raises with the log's tail."""
        with open(self.logfile, "wb") as err:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=err,
                                         cwd=self.h.workdir, start_new_session=True)
        self.h.procs.append(self)
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise RuntimeError(f"{self.name}: no line on stdout within {timeout} s:\n"
                                   f"{self.tail()}")
            chunk = os.read(self.proc.stdout.fileno(), 1)
            if not chunk:
                raise RuntimeError(f"{self.name} exited ({self.proc.wait()}) before it "
                                   f"listened:\n{self.tail()}")
            line += chunk
        return line.decode().strip()

    def stop(self, timeout=15):
        """SIGTERM and wait: the exit code, or None if it had to be killed
        (with whatever it started: its own process group)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                return None
        return self.proc.returncode

    def tail(self, n=40):
        return harness.tail(self.logfile, n)


def install(t, names):
    """{name: None if ready, else the reason it was skipped}."""
    p = subprocess.run([os.path.join(PEERS, "install")] + names, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=900)
    t.eq(p.returncode, 0, "bench/peers/install exits 0", p.stderr[-2000:])
    status = {}
    for line in p.stdout.splitlines():
        name, _, rest = line.partition(": ")
        status[name] = None if rest == "ready" else rest.removeprefix("skipped: ")
    t.eq(sorted(status), sorted(names), "bench/peers/install says ready or skipped for each peer",
         p.stdout)
    return status


def start(h, name, args):
    """The started Peer, or None after a failed TAP line."""
    peer = Peer(h, name, args)
    try:
        line = peer.start()
    except RuntimeError as e:
        h.t.ok(False, f"{name}: starts and says it listens", str(e))
        return None
    h.t.eq(line, f"listening {args[0]}", f"{name}: says `listening PORT` once it listens")
    h.sweep.exclude_port(args[0], f"the {name} benchmark peer")
    return peer


def row(pg, db, uid):
    """[update_type, chat_id, from_id, body as hex] of update `uid` ('' for
    NULL), or None."""
    rows = pg.psql("SELECT update_type, chat_id, from_id, encode(body, 'hex') FROM peer_updates "
                   f"WHERE update_id = {uid}", db=db)
    return rows[0] if rows else None


def expected(body, cols):
    """What row() returns for `body` with make_update's (type, chat, from)."""
    return ["" if v is None else str(v) for v in cols] + [body.hex()]


async def webhook_peer(h, pg, name):
    t = h.t
    pg.createdb(name)
    secret = harness.random_secret()
    port = harness.free_port()
    peer = start(h, name, [port, pg.url(db=name), secret, 4])
    if peer is None:
        return
    poster = harness.Poster(port, PATH, secret)

    # Each type of update that tgring extracts differently.
    text = "Привет \U0001F680 quote \" backslash \\ tab\t"
    first = None
    for i, kind in enumerate(("message", "callback_query", "poll_answer", "channel_post")):
        uid = 1000 + i
        body, cols = harness.make_update(uid, kind, text=text)
        if i % 2 == 0:
            # As written, not as re-encoded: indented, non-ASCII as \u escapes.
            body = json.dumps(json.loads(body), indent=1).encode()
        status, resp, _ = await poster.post(body)
        t.eq(status, 200, f"{name}: a {kind} with the right secret is answered 200", resp)
        t.eq(row(pg, name, uid), expected(body, cols),
             f"{name}: the {kind}'s row holds its type, chat id, sender id and exact body")
        first = first or (uid, body, cols)

    uid, body, cols = first
    for again in (body, body.replace(b"Test", b"Tset")):
        status, resp, _ = await poster.post(again)
        t.eq(status, 200, f"{name}: the same update_id again is answered 200", resp)
    t.eq(pg.scalar(f"SELECT count(*) FROM peer_updates WHERE update_id = {uid}", db=name), "1",
         f"{name}: after the redeliveries the update is still one row")
    t.eq(row(pg, name, uid), expected(body, cols), f"{name}: the row keeps the first body")

    body, _ = harness.make_update(2000)
    status, resp, _ = await poster.post(body, secret=secret[:-1] + ("x" if secret[-1] != "x"
                                                                     else "y"))
    t.eq(status, 401, f"{name}: a wrong secret is answered 401", resp)
    conn = await harness.HttpConn.open(port)
    try:
        resp = await conn.request("POST", PATH, body, {"Content-Type": "application/json"})
        t.eq(resp.status, 401, f"{name}: no secret is answered 401", resp)
    finally:
        conn.close()
    t.eq(row(pg, name, 2000), None, f"{name}: a refused update is not stored")

    for bad in (b'{"update_id":3000,"message":{"chat":{"id":1}', b'{"update_id":3001,}',
                b"not json at all"):
        status, resp, _ = await poster.post(bad)
        t.ok(isinstance(status, int) and 400 <= status < 500,
             f"{name}: malformed JSON {bad[:20]!r} is answered 4xx", f"got {status!r}: {resp!r}")
    t.eq(pg.scalar("SELECT count(*) FROM peer_updates WHERE update_id >= 2000", db=name), "0",
         f"{name}: nothing refused or malformed was stored")

    body, cols = harness.make_update(4000)
    status, resp, _ = await poster.post(body)
    t.eq((status, row(pg, name, 4000)), (200, expected(body, cols)),
         f"{name}: still stores updates after the refusals")

    # An INSERT that fails is no 200: the answer waits for the database's.
    pg.psql("ALTER TABLE peer_updates RENAME TO peer_updates_away", db=name)
    status, resp, _ = await poster.post(harness.make_update(4001)[0])
    t.eq(status, 500, f"{name}: an update whose INSERT fails is answered 500", resp)
    pg.psql("ALTER TABLE peer_updates_away RENAME TO peer_updates", db=name)
    t.eq(row(pg, name, 4001), None, f"{name}: the update whose INSERT failed is not stored")
    poster.close()
    t.eq(peer.stop(), 0, f"{name}: SIGTERM stops it with exit 0", peer.tail)


async def nginx_peer(h):
    t = h.t
    port = harness.free_port()
    peer = start(h, "nginx", [port])
    if peer is None:
        return
    poster = harness.Poster(port, PATH, harness.random_secret())
    for i in range(3):
        status, resp, _ = await poster.post(harness.make_update(5000 + i)[0])
        t.eq(status, 200, f"nginx: POST {i + 1} is answered 200", resp)
    t.eq(poster.opens, 1, "nginx: the POSTs share one keep-alive connection")
    poster.close()
    t.eq(peer.stop(), 0, "nginx: SIGTERM stops it with exit 0", peer.tail)


def pgbench_peer(h, pg):
    t = h.t
    pg.createdb("pgbench")
    body, cols = harness.make_update(1, "callback_query", text="Привет \"\\ \U0001F680")
    body += b"\n"  # kept: the body is the file's bytes
    path = os.path.join(h.workdir, "update.json")
    with open(path, "wb") as f:
        f.write(body)
    p = subprocess.run([os.path.join(PEERS, "pgbench", "run"), pg.url(db="pgbench"), "2", "4",
                        "2", path], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=60)
    out = p.stdout + p.stderr
    if not t.eq(p.returncode, 0, "pgbench: run exits 0", out):
        return
    txns = [int(line.split(":")[1].split("/")[0]) for line in p.stdout.splitlines()
            if line.startswith("number of transactions actually processed:")]
    t.ok(len(txns) == 1 and txns[0] > 0, "pgbench: pgbench's output counts its transactions",
         out)
    t.ok("rows/s = " in p.stdout, "pgbench: prints rows/s", out)
    rows = pg.psql("SELECT count(*), count(DISTINCT update_id), min(update_type), "
                   "max(update_type), min(chat_id), max(chat_id), min(from_id), max(from_id), "
                   "count(*) FILTER (WHERE body <> '\\x" + body.hex() + "'::bytea) "
                   "FROM peer_updates", db="pgbench")[0]
    n = int(rows[0])
    t.eq(n, 4 * (txns[0] if txns else -1),
         "pgbench: 4 rows for each transaction pgbench counted, all distinct ids", out)
    t.eq(rows[1], rows[0], "pgbench: every row has its own update_id")
    kind, chat, frm = cols
    t.eq(rows[2:8], [kind, kind, str(chat), str(chat), str(frm), str(frm)],
         "pgbench: every row has the body's type, chat id and sender id")
    t.eq(rows[8], "0", "pgbench: every row holds the given body, byte for byte")
    # Open loop: 400 rows/s = 100 transactions/s of 4 rows, 2 s after a 1 s warm-up.
    p = subprocess.run([os.path.join(PEERS, "pgbench", "run"), pg.url(db="pgbench"), "2", "4",
                        "2", path, "400", "1"], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=60)
    out = p.stdout + p.stderr
    if not t.eq(p.returncode, 0, "pgbench open loop: run exits 0", out):
        return
    last = p.stdout.splitlines()[-1] if p.stdout else ""
    try:
        d = json.loads(last)
    except ValueError:
        d = {}
    t.ok("rate limit schedule lag" in out,
         "pgbench open loop: pgbench ran with a rate (it reports the schedule lag)", out)
    lat = d.get("latency_ms", {})
    t.ok(d.get("intended_rows_per_s") == 400 and d.get("window_s") == 2
         and 120 <= d.get("transactions", 0) <= 280,
         "pgbench open loop: the window's transactions are about 100/s for 2 s", last)
    t.ok(all(k in lat for k in ("p50", "p90", "p99", "p99.9", "max"))
         and 0 < lat["p50"] <= lat["p99"] <= lat["max"],
         "pgbench open loop: ordered latency percentiles in ms", last)
    after = int(pg.psql("SELECT count(*) FROM peer_updates", db="pgbench")[0][0])
    t.ok(after - n >= 4 * d.get("transactions", 1 << 30),
         "pgbench open loop: the rows of the window's transactions (and the warm-up's) are stored",
         f"{after - n} rows, {last}")


def usage_errors(t):
    for name in ("grammy", "aiohttp", "nginx", "pgbench"):
        p = subprocess.run([os.path.join(PEERS, name, "run")], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=30)
        t.ok(p.returncode != 0 and p.stdout == "" and "usage:" in p.stderr,
             f"{name}: run without arguments fails with its usage",
             f"exit {p.returncode}, stdout {p.stdout!r}, stderr {p.stderr!r}")


async def main(h):
    t = h.t
    names = ["grammy", "aiohttp", "nginx", "pgbench"]
    status = install(t, names)
    usage_errors(t)
    pg = h.postgres(db=None)
    for name in names:
        if name not in status:
            continue
        if status[name] is not None:
            t.skip(f"{name}: the peer's checks", status[name])
        elif name == "nginx":
            await nginx_peer(h)
        elif name == "pgbench":
            pgbench_peer(h, pg)
        else:
            await webhook_peer(h, pg, name)


harness.run(main)
