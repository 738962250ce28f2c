# SPDX-License-Identifier: MIT
"""Connection limits through the binary: a client that pipelines requests for
/metrics and never reads is disconnected once a response has not gone out
within TGRING_RESPONSE_TIMEOUT_MS, and its descriptor is released."""

import os
import re
import socket
import time

import harness

RESPONSE_MS = 1000


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


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
    try:
        for _ in range(4000):
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
    t.ok(re.search(r'"event":"http_send_timeout".*response not sent within 1000 ms', srv.log()),
         "an http_send_timeout line says so")
    st, _, _ = harness.http_get(srv.port, "/health/live")
    t.eq(st, 200, "the server still serves")


async def main(h):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())
    srv = h.tgring(h.serve_env(pg, TGRING_RESPONSE_TIMEOUT_MS=RESPONSE_MS))
    t.ok(srv.wait_ready(30), "ready")
    test_send_deadline(h, t, srv)
    t.eq(srv.stop(), 0, "tgring exits 0 on SIGTERM")


harness.run(main)
