#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""hostile.py - hostile clients against tgring's webhook port (the long
version; not in CI; its short version is tests/integration/test_chaos_hostile.py).

One tgring (TGRING_MAX_CONNECTIONS above the idle scenario's count, the
descriptor limit raised to the hard one) takes, one scenario at a time, from
a separate attacking process (this script run with --attack):

  slowloris   N connections each sending one byte of a never-ending header
              every few seconds; a connection the server closes is opened again
  slow body   N connections with a whole head (Content-Length 100000) then one
              body byte every few seconds; likewise reopened
  no read     N connections pipelining GET /metrics with a tiny receive window
              and never reading; likewise reopened
  invalid     a flood of invalid requests over many short connections
              (garbage, a wrong secret, an oversized header, Content-Length
              with Transfer-Encoding, a body that is not an update)
  idle        N connections that never send a byte, held
  over cap    more connections than TGRING_MAX_CONNECTIONS, held

Meanwhile a light valid load (updates POSTed on one keep-alive connection at
a fixed rate; latency from the scheduled start, so a stall counts in full)
measures normal traffic. Per scenario, tgring's VmRSS and open descriptors
(/proc/<pid>/status and /proc/<pid>/fd) before, at the peak, and after the
attacker has gone, and the load's p99 quiet and under attack.

Checked, with generous bounds so that a noisy machine does not fail them
(the figures are reported either way):
- every update of the light load answered 200, during every attack;
- descriptors at the peak at most those before + the attack's connections
  (4 x for the invalid flood: a connection closed after a 400 lingers up to
  2 s; 2 x for slowloris and slow bodies: one cut with a 408 lingers until
  the attacker, which reopens at once, has closed it) + 64, and at most
  before + TGRING_MAX_CONNECTIONS + 64;
- descriptors back to at most before + 4 within 15 s after the attack;
- RSS at the peak at most before + 64 MiB + 32 KiB per attacking
  connection (sanitized builds' allocators keep more; see RSS_* below);
- RSS after at most before + 64 MiB + 16 KiB per attacking connection;
- p99 under attack at most 10 x the quiet p99 + 250 ms (the aim is 2x: the
  attacker shares the machine's cores with tgring and PostgreSQL);
- the defences fired: slowloris and slow bodies cut by the header and body
  timeouts, non-readers by the response timeout, the invalid requests all
  answered 4xx or closed (none 2xx), connections over the cap closed at once.

A table of figures per scenario goes to stdout (TAP comment lines).

Usage (about 5 minutes): /usr/bin/python3 tests/chaos/hostile.py
(TGRING_BIN: the binary, default build/tgring). Only the Python standard
library is used.
"""

import asyncio
import errno
import json
import os
import resource
import select
import selectors
import socket
import subprocess
import sys
import time

from chaos_measure import Sampler, figures, mib, ms, percentile, report

import botapi_helpers as bh
import harness

PATH = "/webhook/telegram"
PROBE_RATE = 20  # updates/s of the light load
# Bounds of the checks (see the docstring).
FDS_SLACK = 64
FDS_AFTER_SLACK = 4
RSS_BASE_KB = 64 * 1024
RSS_PEAK_PER_CONN_KB = 32
RSS_AFTER_PER_CONN_KB = 16
P99_FACTOR = 10
P99_SLACK_S = 0.25


class Scale:
    def __init__(self, quiet_s, settle_s, timeouts_ms, scenarios):
        self.quiet_s = quiet_s
        self.settle_s = settle_s
        self.timeouts = timeouts_ms  # TGRING_*_TIMEOUT_MS
        # (name, attack kind, connections, seconds, byte interval s)
        self.scenarios = scenarios
        # Room for the idle scenario's connections and the light load's.
        self.cap = next(n for name, _, n, _, _ in scenarios if name == "idle") + 50


LONG = Scale(quiet_s=10, settle_s=15, timeouts_ms={},
             scenarios=[("slowloris", "slowloris", 2000, 40, 3),
                        ("slow body", "slowbody", 2000, 40, 3),
                        ("no read", "noread", 500, 30, 1),
                        ("invalid", "invalid", 64, 30, 0),
                        ("idle", "idle", 10000, 30, 0),
                        ("over cap", "idle", 11000, 20, 0)])
SHORT = Scale(quiet_s=2, settle_s=10,
              timeouts_ms={"TGRING_HEADER_TIMEOUT_MS": 1500, "TGRING_BODY_TIMEOUT_MS": 1500,
                           "TGRING_RESPONSE_TIMEOUT_MS": 1500},
              scenarios=[("slowloris", "slowloris", 500, 3, 0.5),
                         ("slow body", "slowbody", 500, 3, 0.5),
                         ("no read", "noread", 50, 3, 0.5),
                         ("invalid", "invalid", 16, 3, 0),
                         ("idle", "idle", 2000, 3, 0),
                         ("over cap", "idle", 2300, 3, 0)])


# ---- the attacking process ---------------------------------------------------------


INVALID = [
    b"GARBAGE\r\n\r\n",
    b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"X-Telegram-Bot-Api-Secret-Token: wrong\r\nContent-Length: 2\r\n\r\n{}",
    b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"X-Telegram-Bot-Api-Secret-Token: {secret}\r\nContent-Length: 11\r\n\r\nnot an upd.",
    b"GET /\x01 HTTP/1.1\r\n\r\n",
]


class Attack:
    """One kind of attack with `n` connections for `seconds`, on a selector."""

    def __init__(self, kind, port, n, seconds, interval, secret):
        self.kind, self.port, self.n = kind, port, n
        self.seconds, self.interval, self.secret = seconds, interval, secret.encode()
        self.sel = selectors.DefaultSelector()
        self.conns = {}  # socket -> {"out": bytes to trickle, "due": monotonic time}
        self.stats = {"opened": 0, "closed_by_server": 0, "refused": 0, "max_open": 0,
                      "responses": {}, "requests": 0}
        head = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"X-Telegram-Bot-Api-Secret-Token: {secret}\r\n").encode()
        self.loris = head + b"X-Pad: " + b"a" * 100000
        self.body_head = head + b"Content-Length: 100000\r\n\r\n"
        self.invalid = [r.replace(b"{secret}", self.secret) for r in INVALID]

    def open(self, i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if self.kind == "noread":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        r = s.connect_ex(("127.0.0.1", self.port))
        if r not in (0, errno.EINPROGRESS):
            self.stats["refused"] += 1
            s.close()
            return
        self.stats["opened"] += 1
        now = time.monotonic()
        c = {"i": i, "sent": 0, "in": b"", "due": now + (i % 100) / 100 * self.interval}
        if self.kind == "slowbody":
            c["out"], c["sent"] = self.body_head, 0
            c["due"] = now
        elif self.kind == "invalid":
            c["out"] = self.invalid[self.stats["opened"] % len(self.invalid)]
            c["due"] = now
        self.conns[s] = c
        # A non-reader is never read from, so never selected: the server's
        # close shows in a failed send.
        if self.kind != "noread":
            self.sel.register(s, selectors.EVENT_READ)
        self.stats["max_open"] = max(self.stats["max_open"], len(self.conns))

    def drop(self, s, by_server):
        c = self.conns.pop(s)
        if self.kind != "noread":
            self.sel.unregister(s)
        s.close()
        if by_server:
            self.stats["closed_by_server"] += 1
        return c["i"]

    def on_readable(self, s):
        c = self.conns[s]
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if self.kind == "invalid" and data:
            c["in"] += data
            if b"\r\n" in c["in"]:
                status = c["in"].split(b" ", 2)[1].decode("latin-1", "replace")
                self.stats["responses"][status] = self.stats["responses"].get(status, 0) + 1
                self.open(self.drop(s, False))
            return
        if not data:
            i = self.drop(s, True)
            if self.kind != "idle":
                self.open(i)

    def trickle(self, s, now):
        """Sends what this connection sends next when it is due."""
        c = self.conns[s]
        if self.kind == "idle" or now < c["due"]:
            return
        try:
            if self.kind == "slowloris":
                s.send(self.loris[c["sent"]:c["sent"] + 1])
                c["sent"] += 1
            elif self.kind == "slowbody":
                if c["out"]:
                    c["out"] = c["out"][s.send(c["out"]):]
                else:
                    s.send(b"1")
            elif self.kind == "invalid":
                if c["out"]:
                    c["out"] = c["out"][s.send(c["out"]):]
                    self.stats["requests"] += not c["out"]
                return
            elif self.kind == "noread":
                # Many requests to a send: a request to a send() kept a
                # slow machine's attacker on its first connections for
                # the whole attack.
                one = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                while True:
                    self.stats["requests"] += s.send(one * 256) // len(one)
        except BlockingIOError:
            pass
        except OSError:
            self.open(self.drop(s, True))
            return
        c["due"] = now + self.interval

    def run(self):
        for i in range(self.n):
            self.open(i)
        print("attacking", flush=True)
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            for key, _ in self.sel.select(timeout=0.05 if self.kind != "invalid" else 0.001):
                if key.fileobj in self.conns:
                    self.on_readable(key.fileobj)
            if self.kind == "idle":
                continue
            now = time.monotonic()
            for s in list(self.conns):
                if s in self.conns:
                    self.trickle(s, now)
        # A non-reader learns of the server's close only when it sends
        # again; ask the kernel for those it has not noticed yet.
        hung = set()
        if self.kind == "noread" and self.conns:
            p = select.poll()
            for s in self.conns:
                p.register(s, select.POLLRDHUP)
            hung = {fd for fd, _ in p.poll(0)}
        for s in list(self.conns):
            self.drop(s, s.fileno() in hung)
        return self.stats


def attack_main(argv):
    kind, port, n, seconds, interval, secret = argv
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stats = Attack(kind, int(port), int(n), float(seconds), float(interval), secret).run()
    print(json.dumps(stats), flush=True)


# ---- the measuring side ------------------------------------------------------------


class Probe:
    """The light valid load: PROBE_RATE updates/s on one keep-alive connection."""

    def __init__(self, port, secret):
        self.poster = harness.Poster(port, PATH, secret)
        self.update_id = 10**6

    async def run(self, seconds):
        """Posts for `seconds`; returns (latencies s, outcomes other than 200)."""
        lat, bad = [], []
        start = time.monotonic()
        k = 0
        while True:
            due = start + k / PROBE_RATE
            if due >= start + seconds:
                return lat, bad
            await asyncio.sleep(max(0, due - time.monotonic()))
            self.update_id += 1
            body, _ = harness.make_update(self.update_id)
            outcome, _, _ = await self.poster.post(body)
            lat.append(time.monotonic() - due)
            if outcome != 200:
                bad.append(outcome)
            k += 1


async def scenario(h, srv, probe, scale, quiet_p99, name, kind, n, seconds, interval):
    t = h.t
    secret = srv.env["TELEGRAM_WEBHOOK_SECRET"]
    rss0, _, fds0 = figures(srv.pid)
    m0 = srv.metrics()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--attack", kind,
                             str(srv.port), str(n), str(seconds), str(interval), secret],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            preexec_fn=harness._die_with_parent)
    sampler = Sampler(srv.pid).start()
    loop = asyncio.get_running_loop()
    first = await loop.run_in_executor(None, proc.stdout.readline)
    lat, bad = await probe.run(seconds)
    out = await loop.run_in_executor(None, proc.stdout.read)
    await loop.run_in_executor(None, proc.wait)
    await sampler.stop()
    try:
        stats = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        stats = None
    t.ok(first.strip() == b"attacking" and stats is not None and proc.returncode == 0,
         f"{name}: the attacker ran ({n} connections, {seconds} s)", repr(first + out))
    stats = stats or {"opened": 0, "closed_by_server": 0, "max_open": 0, "responses": {}}
    await bh.wait_for(lambda: figures(srv.pid)[2] <= fds0 + FDS_AFTER_SLACK, scale.settle_s)
    rss1, _, fds1 = figures(srv.pid)
    m1 = srv.metrics()
    p99 = percentile(lat, 99)

    t.ok(not bad, f"{name}: all {len(lat)} updates of the light load answered 200",
         repr(bad[:10]))
    conns = stats["max_open"]
    # A connection answered 400 with a close lingers on the server for up to
    # 2 s while the flood has opened the next: count four per flooding one.
    # A slow one answered 408 lingers until the server reads the attacker's
    # close, and the attacker has opened the next one by then; all of them time
    # out together, so on a busy host the server briefly holds both: two each.
    held = conns * (4 if kind == "invalid" else 2 if kind in ("slowloris", "slowbody") else 1)
    t.ok(sampler.peak_fds <= fds0 + min(held, scale.cap) + FDS_SLACK,
         f"{name}: descriptors bounded ({fds0} before, {sampler.peak_fds} at the peak, "
         f"{conns} attacking connections at most)")
    t.ok(fds1 <= fds0 + FDS_AFTER_SLACK, f"{name}: descriptors back to {fds1} ({fds0} before)")
    t.ok(sampler.peak_rss <= rss0 + RSS_BASE_KB + RSS_PEAK_PER_CONN_KB * conns,
         f"{name}: RSS bounded ({mib(rss0)} MiB before, {mib(sampler.peak_rss)} at the peak)")
    t.ok(rss1 <= rss0 + RSS_BASE_KB + RSS_AFTER_PER_CONN_KB * conns,
         f"{name}: RSS back to {mib(rss1)} MiB")
    t.ok(p99 is not None and p99 <= P99_FACTOR * quiet_p99 + P99_SLACK_S,
         f"{name}: p99 of the light load {ms(p99)} ms under attack, {ms(quiet_p99)} ms quiet "
         f"(bound {P99_FACTOR} x quiet + {P99_SLACK_S * 1000:.0f} ms)")

    def grew(metric):
        return (harness.metric(m1, metric) or 0) - (harness.metric(m0, metric) or 0)
    closed = stats["closed_by_server"]
    if kind in ("slowloris", "slowbody"):
        timeout = scale.timeouts.get("TGRING_HEADER_TIMEOUT_MS" if kind == "slowloris"
                                     else "TGRING_BODY_TIMEOUT_MS")
        timeout = (timeout or (10000 if kind == "slowloris" else 30000)) / 1000
        if seconds > timeout + 1:
            t.ok(closed >= n // 2, f"{name}: the server cut {closed} connections at its "
                 f"{timeout:.1f} s timeout")
    elif kind == "noread":
        cut = grew("tgring_http_send_timeouts_total")
        t.ok(cut >= 1 and closed >= 1, f"{name}: {cut:.0f} non-readers disconnected at the "
             "response deadline")
    elif kind == "invalid":
        resp = stats["responses"]
        total = sum(resp.values())
        t.ok(total >= 100 and all(s.startswith("4") for s in resp),
             f"{name}: {total} invalid requests answered, all 4xx ({resp})")
    elif name == "over cap":
        over = conns - scale.cap
        t.ok(closed >= over * 0.9, f"{name}: {closed} connections past the cap closed at "
             f"accept ({over} over it)")
    else:
        t.ok(closed == 0, f"{name}: all {n} idle connections held ({closed} closed)")
    return [name, conns, closed, f"{mib(rss0)} / {mib(sampler.peak_rss)} / {mib(rss1)}",
            f"{fds0} / {sampler.peak_fds} / {fds1}", ms(quiet_p99), ms(p99),
            f"{grew('tgring_updates_stored_total'):.0f}"]


async def run_hostile(h, scale):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    # AddressSanitizer's quarantine keeps freed memory resident (256 MiB by
    # default): a small one lets RSS after an attack show what is still held.
    srv = h.tgring(h.serve_env(pg, TGRING_MAX_CONNECTIONS=scale.cap, **scale.timeouts),
                   nofile=(hard, hard), extra_asan={"quarantine_size_mb": "16"})
    t.ok(srv.wait_ready(30), f"tgring is ready (TGRING_MAX_CONNECTIONS={scale.cap}, "
         f"descriptor limit {hard})")
    t.ok("max_connections_lowered" not in srv.log(), "the connection cap fits the limit")
    probe = Probe(srv.port, srv.env["TELEGRAM_WEBHOOK_SECRET"])
    await probe.run(1)  # warm: the connection, PostgreSQL's caches
    lat, bad = await probe.run(scale.quiet_s)
    quiet = percentile(lat, 99)
    t.ok(not bad, f"quiet: all {len(lat)} updates answered 200 (p99 {ms(quiet)} ms, "
         f"p50 {ms(percentile(lat, 50))} ms)", repr(bad[:5]))
    rows = []
    for sc in scale.scenarios:
        rows.append(await scenario(h, srv, probe, scale, quiet, *sc))
    probe.poster.close()
    t.eq(srv.stop(), 0, "tgring stops cleanly (exit 0)")
    report("Hostile clients (RSS in MiB, before / peak / after; p99 of "
           f"{PROBE_RATE} updates/s in ms)",
           ["scenario", "connections", "closed by tgring", "RSS", "fds", "p99 quiet",
            "p99 attack", "updates stored"], rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--attack":
        attack_main(sys.argv[2:])
    else:
        harness.run(lambda h: run_hostile(h, LONG))
