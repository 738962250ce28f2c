# SPDX-License-Identifier: MIT
"""TGRING_WORKERS=2: two worker processes serve one port (SO_REUSEPORT),
connections are spread over both, every update is stored once, /metrics sums
the workers, and SIGTERM to the main process stops them all."""

import asyncio
import os
import random
import time

import harness

CONNS = 40
PER_CONN = 10


def established_inodes(port):
    """Socket inodes of established TCP connections whose local port is `port`."""
    return {inode for inode, (local, _, state) in harness.tcp_sockets().items()
            if local == port and state == "01"}


def socket_inodes(pid):
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                out.add(target[8:-1])
    except OSError:
        pass
    return out


async def main(h):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())
    secret = harness.random_secret()
    path = "/tg/hook-" + harness.random_secret(8)
    srv = h.tgring(h.serve_env(pg, secret, TGRING_WORKERS=2, TGRING_SHUTDOWN_TIMEOUT_MS=5000,
                               TGRING_WEBHOOK_PATH=path))
    # Each new connection lands on either worker: ten ready answers in a row
    # mean both have their database connection.
    streak = 0
    deadline = time.monotonic() + 30
    while streak < 10 and time.monotonic() < deadline:
        try:
            streak = streak + 1 if harness.http_get(srv.port, "/health/ready")[0] == 200 else 0
        except OSError:
            streak = 0
        if streak == 0:
            await asyncio.sleep(0.05)
    t.ok(streak >= 10, "both workers are ready")

    kids = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kids = harness.children(srv.pid)
        if len(kids) >= 2:
            break
        await asyncio.sleep(0.1)
    t.eq(len(kids), 2, "two worker processes", f"children of {srv.pid}: {kids}")

    base = random.randrange(10**9, 2 * 10**9)
    posters = [harness.Poster(srv.port, path, secret) for _ in range(CONNS)]
    statuses = []

    async def send(k, i):
        uid = base + k * PER_CONN + i
        body, _ = harness.make_update(uid, "message", chat_id=100 + k, from_id=200 + k)
        st, resp, _ = await posters[k].post(body, timeout=20)
        statuses.append((uid, st))

    # One update on each connection, then look at who holds them.
    await asyncio.gather(*(send(k, 0) for k in range(CONNS)))
    est = established_inodes(srv.port)
    per_proc = {pid: len(socket_inodes(pid) & est) for pid in [srv.pid] + kids}
    served = [pid for pid, n in per_proc.items() if n > 0]
    t.ok(sum(per_proc.values()) == CONNS, "the server side of every connection is found",
         f"{per_proc}, {len(est)} established")
    t.ok(len([p for p in kids if per_proc.get(p)]) == 2,
         "connections are spread over both workers", f"connections per pid: {per_proc}")
    t.diag(f"connections per pid: {per_proc}; serving: {served}")

    body, _ = harness.make_update(base - 1, "message", chat_id=1, from_id=1)
    c = await harness.HttpConn.open(srv.port)
    r = await c.request("POST", "/webhook/telegram", body,
                        {"X-Telegram-Bot-Api-Secret-Token": secret})
    c.close()
    t.eq(r.status, 404, "with TGRING_WEBHOOK_PATH set, the default path is 404")

    for i in range(1, PER_CONN):
        await asyncio.gather(*(send(k, i) for k in range(CONNS)))
    for p in posters:
        p.close()

    bad = [(u, st) for u, st in statuses if st != 200]
    t.ok(not bad and len(statuses) == CONNS * PER_CONN, "every update got 200",
         f"{len(statuses)} answers, not 200: {bad[:10]}")
    n = int(pg.scalar(f"SELECT count(*) FROM updates WHERE update_id >= {base}"))
    t.eq(n, CONNS * PER_CONN, "all updates are stored, once each")

    stored = None
    for _ in range(20):
        stored = harness.metric(srv.metrics(), "tgring_updates_stored_total")
        if stored == CONNS * PER_CONN:
            break
        await asyncio.sleep(0.1)
    t.eq(stored, float(CONNS * PER_CONN), "/metrics sums the workers' stored counts")

    t0 = time.monotonic()
    srv.signal()
    rc = await asyncio.to_thread(srv.wait, 7)
    t.eq(rc, 0, "SIGTERM to the main process: exit 0")
    t.ok(rc is not None and time.monotonic() - t0 < 6, "within the grace period",
         f"{time.monotonic() - t0:.2f} s")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(harness.pid_alive(k) for k in kids):
        await asyncio.sleep(0.1)
    left = [k for k in kids if harness.pid_alive(k)]
    t.ok(not left, "no worker is left running", f"{left}")
    for k in left:
        os.kill(k, 9)

    # A worker that dies must not leave a half-served port behind: either it
    # is replaced, or the whole server stops with a non-zero exit (and the
    # container's restart policy starts it again).
    srv = h.tgring(h.serve_env(pg, secret, TGRING_WORKERS=2, TGRING_SHUTDOWN_TIMEOUT_MS=3000))
    kids = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(kids) < 2:
        kids = harness.children(srv.pid)
        await asyncio.sleep(0.1)
    victim = kids[0] if kids else None
    t.ok(victim is not None, "two workers again")
    if victim is None:
        return
    os.kill(victim, 9)
    deadline = time.monotonic() + 10
    now = []
    rc = None
    while time.monotonic() < deadline:
        rc = srv.proc.poll()
        now = harness.children(srv.pid) if rc is None else []
        if rc is not None or (len(now) == 2 and victim not in now):
            break
        await asyncio.sleep(0.1)
    if rc is None:
        t.ok(len(now) == 2 and victim not in now, "the killed worker is replaced",
             f"before {kids}, killed {victim}, now {now}")
        t.ok(srv.wait_ready(15), "and the server is ready again")
    else:
        t.ok(rc != 0, "the server stops with a non-zero exit when a worker dies", f"exit {rc}")
        other = [k for k in kids if k != victim]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(harness.pid_alive(k) for k in other):
            await asyncio.sleep(0.1)
        t.ok(not any(harness.pid_alive(k) for k in other), "and the other worker is gone too")
        t.diag(f"a dead worker stopped the server (exit {rc})")


harness.run(main)
