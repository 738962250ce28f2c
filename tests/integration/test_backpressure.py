# SPDX-License-Identifier: MIT
"""Backpressure: while another session holds a lock on the updates table the
inserts stall. Updates past TGRING_QUEUE_MAX are refused at once with 503 and
Retry-After, the queued ones get 503 when the ack timeout passes, the server
keeps answering health checks, memory stays flat, and once the lock is gone
200s resume and every 200 is stored. Also: connections past
TGRING_MAX_CONNECTIONS are not served."""

import asyncio
import random
import time

import harness

QUEUE_MAX = 32
ACK_MS = 1500
BURST = 120
MAX_CONNS = 150


async def main(h):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())
    secret = harness.random_secret()
    path = "/webhook/telegram"
    srv = h.tgring(h.serve_env(pg, secret, TGRING_QUEUE_MAX=QUEUE_MAX,
                               TGRING_ACK_TIMEOUT_MS=ACK_MS, TGRING_MAX_CONNECTIONS=MAX_CONNS),
                   extra_asan={"quarantine_size_mb": "8"})
    t.ok(srv.wait_ready(30), "ready")
    base = random.randrange(10**9, 2 * 10**9)
    log = []  # (update_id, outcome, seconds, Retry-After)

    # The client waits long past the ack timeout: how long an answer took is
    # reported, and which path answered it is told by the body, not the clock.
    async def post_one(uid, timeout=ACK_MS / 1000 + 30):
        p = harness.Poster(srv.port, path, secret)
        body, _ = harness.make_update(uid, "message", chat_id=uid % 1000 + 1, from_id=5)
        st, resp, dt = await p.post(body, timeout=timeout)
        p.close()
        ra, text = None, b""
        if isinstance(resp, harness.Response):
            ra, text = resp.header("retry-after"), resp.body
        log.append((uid, st, dt, ra))
        return st, dt, ra, text

    res = await asyncio.gather(*(post_one(base + i) for i in range(10)))
    t.ok(all(r[0] == 200 for r in res), "200 before the lock", f"{res}")

    # Another session takes the table; the server's inserts now wait on it.
    locker = pg.lock_table("updates")
    try:
        rss_before = harness.proc_status(srv.pid, "VmRSS")

        t0 = time.monotonic()
        burst = asyncio.gather(*(post_one(base + 100 + i) for i in range(BURST)))
        await asyncio.sleep(0.3)
        live = await asyncio.to_thread(harness.http_get, srv.port, "/health/live", 2)
        metrics_ok = await asyncio.to_thread(harness.http_get, srv.port, "/metrics", 2)
        res = await burst
        took = time.monotonic() - t0
        rss_after = harness.proc_status(srv.pid, "VmRSS")

        t.eq(live[0], 200, "/health/live answers while the inserts are stuck")
        t.eq(metrics_ok[0], 200, "/metrics answers while the inserts are stuck")
        statuses = sorted({str(r[0]) for r in res})
        t.ok(all(r[0] == 503 for r in res), "every update of the burst gets 503",
             f"outcomes {statuses}")
        t.ok(all((r[2] or "").strip().isdigit() for r in res if r[0] == 503),
             "each with Retry-After")
        # An update the full queue refuses is answered "database unavailable" at
        # once; one that was queued is answered "update not stored" by the ack
        # timeout.
        at_once = [r for r in res if r[0] == 503 and b"unavailable" in r[3]]
        waited = [r for r in res if r[0] == 503 and b"not stored" in r[3]]
        t.eq(len(at_once) + len(waited), BURST, "each 503 says which of the two refused it",
             f"{sorted({r[3] for r in res})}")
        t.ok(len(at_once) >= BURST - QUEUE_MAX,
             f"updates past TGRING_QUEUE_MAX ({QUEUE_MAX}) are refused without being queued",
             f"{len(at_once)} refused at once, {len(waited)} after a wait")
        t.ok(waited and len(waited) <= QUEUE_MAX,
             "the queued ones are answered by the ack timeout, at most TGRING_QUEUE_MAX of them",
             f"{len(waited)} waited")
        # The ack timeout is the feature here: the queued ones waited at least that long.
        t.ok(all(r[1] >= ACK_MS / 1000 - 0.2 for r in waited),
             f"and none of those before the ack timeout ({ACK_MS} ms)",
             f"{sorted(round(r[1], 2) for r in waited)}")

        def span(rs):
            return f"{min(r[1] for r in rs):.2f}..{max(r[1] for r in rs):.2f} s" if rs else "-"
        t.diag(f"burst: {len(at_once)} refused at once ({span(at_once)}), {len(waited)} "
               f"waited ({span(waited)}), took {took:.2f} s")
        t.ok(rss_before and rss_after and rss_after - rss_before < 32 * 1024,
             "memory stays flat", f"VmRSS {rss_before} -> {rss_after} kB")
    finally:
        pg.unlock(locker)

    # The lock is gone: 200s resume on their own.
    resumed = None
    t0 = time.monotonic()
    uid = base + 1000
    while time.monotonic() - t0 < 30:
        st = (await post_one(uid))[0]
        uid += 1
        if st == 200:
            resumed = time.monotonic() - t0
            break
        await asyncio.sleep(0.1)
    t.ok(resumed is not None, "200s resume after the lock is released", f"{uid - base - 1000} tries")
    if resumed is not None:
        t.diag(f"the first 200 came {resumed:.2f} s after the unlock")
    res = await asyncio.gather(*(post_one(uid + i) for i in range(20)))
    t.ok(all(r[0] == 200 for r in res), "and stay 200", f"{sorted({str(r[0]) for r in res})}")

    acked = {e[0] for e in log if e[1] == 200}
    stored = {int(r[0]) for r in
              pg.psql(f"SELECT update_id FROM updates WHERE update_id >= {base}")}
    missing = sorted(acked - stored)
    t.ok(not missing, "every update that got a 200 is in the table", f"missing {missing[:10]}")
    m = srv.metrics()
    un = harness.metric(m, "tgring_http_requests_total", code="503")
    t.ok(un is not None and un >= BURST, "tgring_http_requests_total counts the 503s", f"{un}")

    # Connections past TGRING_MAX_CONNECTIONS are not served.
    conns = []
    for _ in range(MAX_CONNS):
        c = await harness.HttpConn.open(srv.port)
        conns.append(c)
    answered = 0
    for c in conns:
        r = await c.request("GET", "/health/live")
        answered += r.status == 200
    t.eq(answered, MAX_CONNS, f"{MAX_CONNS} connections are served")
    extra = await harness.HttpConn.open(srv.port)
    try:
        await extra.send(harness.build_request("GET", "/health/live"))
        r = await extra.read_response(3)
        outcome = r.status
    except (harness.ConnectionClosed, asyncio.TimeoutError) as e:
        outcome = type(e).__name__
    extra.close()
    t.ok(outcome != 200, "one more connection is not served", f"{outcome}")
    for c in conns:
        c.close()
    await asyncio.sleep(0.3)
    st = None
    for _ in range(20):
        try:
            st = harness.http_get(srv.port, "/health/live", 2)[0]
            break
        except OSError:
            await asyncio.sleep(0.1)
    t.eq(st, 200, "after they close, new connections are served again")

    rc = srv.stop()
    t.eq(rc, 0, "tgring exits 0 on SIGTERM")


harness.run(main)
