# SPDX-License-Identifier: MIT
"""Connection limits through the binary. A client that pipelines requests for
/metrics and never reads is disconnected once it has taken nothing sent to it
for TGRING_RESPONSE_TIMEOUT_MS, and its descriptor is released. Started
with few descriptors, a worker raises its soft RLIMIT_NOFILE to the hard limit,
lowers TGRING_MAX_CONNECTIONS to fit (with a warning), or refuses to start
when not one connection fits.

With the cap fitted, accept cannot run out of descriptors through connections
alone, and io_uring takes the limit when the multishot accept is armed, so
lowering it under a running server does not reach accept either: the back-off
after a failed accept is tested on the server itself (tests/unit/http)."""

import os
import re
import select
import socket
import time

import harness

RESPONSE_MS = 1000


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def limits_line(pid):
    with open(f"/proc/{pid}/limits") as f:
        return next(ln for ln in f if ln.startswith("Max open files"))


def wait_for(cond, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def metric(srv, name):
    try:
        return harness.metric(srv.metrics(), name)
    except (OSError, RuntimeError):
        return None


def closed_by_peer(s, timeout):
    """Reads and discards until EOF or a reset; False if neither comes in time."""
    s.setblocking(True)
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_send_deadline(h, t, srv):
    pid = srv.pid
    t.ok(wait_for(lambda: metric(srv, "tgring_http_connections_open") == 1, 5),
         "no client connection but the metrics one")
    base_fds = nfds(pid)
    s = socket.socket()
    # A tiny receive window, and nothing is ever read: the responses pile up.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.connect(("127.0.0.1", srv.port))
    s.setblocking(False)
    req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    sent = 0
    # About 37 KB: more than the server reads ahead of a response in flight,
    # less than it keeps before closing a client that floods it at once.
    try:
        for _ in range(1000):
            s.send(req)
            sent += 1
    except BlockingIOError:
        pass
    t.diag(f"{sent} requests for /metrics pipelined")
    t0 = time.monotonic()
    timeouts = wait_for(lambda: metric(srv, "tgring_http_send_timeouts_total"),
                        RESPONSE_MS / 1000 + 10, 0.2)
    took = time.monotonic() - t0
    t.ok(timeouts == 1, "a client that stops reading is closed at the response deadline",
         f"tgring_http_send_timeouts_total {timeouts} after {took:.1f} s")
    t.ok(wait_for(lambda: metric(srv, "tgring_http_connections_open") == 1, 5),
         "and its connection is freed")
    t.ok(wait_for(lambda: nfds(pid) <= base_fds, 5), "and its descriptor is closed",
         f"{nfds(pid)} descriptors open, {base_fds} before")
    t.ok(closed_by_peer(s, 5), "the client sees the connection closed")
    s.close()
    t.ok(re.search(r'"event":"http_send_timeout".*took nothing sent to it for 1000 ms', srv.log()),
         "an http_send_timeout line says so")
    st, _, _ = harness.http_get(srv.port, "/health/live")
    t.eq(st, 200, "the server still serves")


def test_fit_at_start(h, t, pg):
    # The soft limit is raised to the hard one: no warning, the setting is kept.
    srv = h.tgring(h.serve_env(pg, TGRING_MAX_CONNECTIONS=1000), nofile=(256, 2048))
    line = limits_line(srv.pid).split()
    t.ok(line[3:5] == ["2048", "2048"], "the soft descriptor limit is raised to the hard one",
         " ".join(line))
    t.ok("max_connections_lowered" not in srv.log(), "and the setting fits: no warning")
    t.eq(srv.stop(), 0, "it stops cleanly")

    # A hard limit of 200: 32 + 2 x 2 + 8 are kept, 156 connections fit.
    srv = h.tgring(h.serve_env(pg), nofile=(200, 200))
    log = srv.log()
    t.ok(re.search(r"TGRING_MAX_CONNECTIONS=16384 does not fit.*serving at most 156 connections",
                   log), "TGRING_MAX_CONNECTIONS is lowered to fit, with a warning",
         harness.tail(srv.logfile, 5))
    socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(170)]
    time.sleep(1)
    for s in socks:
        s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    answered = closed = 0
    for s in socks:
        if select.select([s], [], [], 5)[0]:
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            if data.startswith(b"HTTP/1.1 200"):
                answered += 1
            elif data == b"":
                closed += 1
        s.close()
    # The harness's own probe of the server may still hold a connection: up to 156 served.
    t.ok(150 <= answered <= 156 and answered + closed == 170,
         "the lowered cap serves at most 156, closes the rest at accept",
         f"{answered} answered, {closed} closed")
    t.ok('"event":"accept_failed"' not in srv.log(), "and accept never runs out of descriptors")
    t.eq(srv.stop(), 0, "it stops cleanly")

    # Not even one connection: the start is refused with one clear line.
    srv = h.tgring(h.serve_env(pg), nofile=(40, 40), wait=False)
    rc = srv.wait(30)
    t.ok(rc not in (0, None), "with a limit of 40 descriptors the start is refused", f"exit {rc}")
    t.ok(re.search(r'"event":"nofile_too_low".*is 40, not even one connection fits', srv.log()),
         "with one line that names the limit", harness.tail(srv.logfile, 5))


async def main(h):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())
    srv = h.tgring(h.serve_env(pg, TGRING_RESPONSE_TIMEOUT_MS=RESPONSE_MS))
    t.ok(srv.wait_ready(30), "ready")
    test_send_deadline(h, t, srv)
    t.eq(srv.stop(), 0, "tgring exits 0 on SIGTERM")
    test_fit_at_start(h, t, pg)


harness.run(main)
