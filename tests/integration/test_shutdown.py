# SPDX-License-Identifier: MIT
"""Graceful shutdown under load: SIGTERM while 50 connections post updates.
tgring finishes what is in flight and exits 0 within the grace period; every
update that got a 200 is in the table; connections opened after the signal
are refused or answered 503, never 200."""

import asyncio
import itertools
import random
import signal
import time

import harness

CONNS = 50
GRACE_MS = 5000
LOAD_S = 2.0
# The grace period is the contract under test, so the exit is checked against
# it, with this much room for a loaded machine to reap an ASan build.
EXIT_SLACK_S = 3.0


async def main(h):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())
    secret = harness.random_secret()
    path = "/webhook/telegram"
    srv = h.tgring(h.serve_env(pg, secret, TGRING_SHUTDOWN_TIMEOUT_MS=GRACE_MS))
    t.ok(srv.wait_ready(30), "ready")

    base = random.randrange(10**9, 2 * 10**9)
    ids = itertools.count(base)
    log = []  # (start, update_id, outcome, seconds, on a connection opened after SIGTERM)
    stop = asyncio.Event()
    t_sig = None

    async def poster(k):
        p = harness.Poster(srv.port, path, secret)
        try:
            while not stop.is_set():
                uid = next(ids)
                body, _ = harness.make_update(uid, "message", chat_id=3000 + k,
                                              from_id=4000 + k, text=f"shutdown {uid}")
                t0 = time.monotonic()
                fresh = p.conn is None or p.conn.closed
                st, resp, dt = await p.post(body, timeout=GRACE_MS / 1000 + 5)
                log.append((t0, uid, st, dt, fresh and t_sig is not None and t0 > t_sig))
                if st != 200:
                    await asyncio.sleep(0.05)
        finally:
            p.close()

    tasks = [asyncio.create_task(poster(k)) for k in range(CONNS)]
    await asyncio.sleep(LOAD_S)
    t_sig = time.monotonic()
    srv.signal(signal.SIGTERM)

    def wait_exit():
        rc = srv.wait(GRACE_MS / 1000 + EXIT_SLACK_S + 2)
        return rc, time.monotonic()

    waiter = asyncio.create_task(asyncio.to_thread(wait_exit))

    # New connections a moment after the signal, while the old ones drain.
    await asyncio.sleep(0.3)
    late = []
    for i in range(5):
        p = harness.Poster(srv.port, path, secret)
        uid = next(ids)
        body, _ = harness.make_update(uid, "message", chat_id=5000 + i, from_id=1)
        st, resp, dt = await p.post(body, timeout=GRACE_MS / 1000 + 5)
        late.append((uid, st))
        p.close()

    rc, t_exit = await waiter
    stop.set()
    await asyncio.gather(*tasks)

    t.eq(rc, 0, "tgring exits 0 after SIGTERM under load")
    t.ok(rc is not None and t_exit - t_sig <= GRACE_MS / 1000 + EXIT_SLACK_S,
         f"within the grace period ({GRACE_MS} ms)", f"took {t_exit - t_sig:.2f} s")
    before = [e for e in log if e[0] + e[3] < t_sig]
    t.ok(before and all(e[2] == 200 for e in before), "all 200 before the signal",
         f"{len(before)} requests, outcomes {sorted({str(e[2]) for e in before})}")
    odd = [(e[1], e[2]) for e in log if e[0] >= t_sig and e[2] not in (200, 503, "refused",
                                                                    "closed")]
    t.ok(not odd, "after the signal: 200, 503, refused or closed only", f"{odd[:10]}")
    t.ok(all(st != 200 for _, st in late),
         "connections opened after the signal are refused or answered 503", f"{late}")
    fresh200 = [(e[1], e[2]) for e in log if e[4] and e[2] == 200]
    t.ok(not fresh200, "no 200 on a connection opened after the signal", f"{fresh200[:10]}")

    acked = {e[1] for e in log if e[2] == 200} | {u for u, st in late if st == 200}
    stored = {int(r[0]) for r in
              pg.psql(f"SELECT update_id FROM updates WHERE update_id >= {base}")}
    missing = sorted(acked - stored)
    t.ok(acked and not missing, "every update that got a 200 is in the table",
         f"{len(missing)} of {len(acked)} missing, e.g. {missing[:10]}")
    after = [e for e in log if e[0] >= t_sig]
    await stuck_shutdown(h, pg, secret, path)
    straddle = [e for e in log if e[0] < t_sig <= e[0] + e[3]]
    # A request the server had not read yet when the signal came may see the
    # connection close instead (the client retries); one it was working on must
    # be finished, so nearly all of them get an answer.
    answered = [e for e in straddle if e[2] in (200, 503)]
    t.ok(straddle and len(answered) >= 0.9 * len(straddle),
         "requests in flight at the signal are answered",
         f"{len(answered)} of {len(straddle)}: "
         f"{sorted((str(e[2]), round(e[0] + e[3] - t_sig, 3)) for e in straddle)[:60]}")
    t.diag(f"requests {len(log)}, after the signal {len(after)}: "
           f"{sorted({str(e[2]) for e in after})}; late connections {late}")


async def stuck_shutdown(h, pg, secret, path):
    """SIGTERM while updates wait on a locked table: the grace period bounds
    the wait, the stuck requests are not answered 200, and the exit is 0."""
    t = h.t
    grace = 2000
    srv = h.tgring(h.serve_env(pg, secret, TGRING_SHUTDOWN_TIMEOUT_MS=grace,
                               TGRING_ACK_TIMEOUT_MS=20000))
    t.ok(srv.wait_ready(30), "second server ready")
    locker = pg.lock_table("updates")
    try:
        base = random.randrange(3 * 10**9, 4 * 10**9)

        async def post(i):
            p = harness.Poster(srv.port, path, secret)
            body, _ = harness.make_update(base + i, "message", chat_id=base + i, from_id=1)
            st, _, dt = await p.post(body, timeout=grace / 1000 + 10)
            p.close()
            return base + i, st, dt

        posts = asyncio.gather(*(post(i) for i in range(10)))
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        rc = await asyncio.to_thread(srv.wait, grace / 1000 + EXIT_SLACK_S + 5)
        took = time.monotonic() - t0
        res = await posts
    finally:
        pg.unlock(locker)
    t.eq(rc, 0, "SIGTERM with updates stuck on a locked table: exit 0")
    # The stuck updates hold the exit until the grace period ends (lower bound),
    # and no longer than it (the contract, with room for a loaded machine).
    t.ok(rc is not None and grace / 1000 - 0.2 <= took <= grace / 1000 + EXIT_SLACK_S,
         f"at the end of the grace period ({grace} ms)", f"took {took:.2f} s")
    t.ok(all(st != 200 for _, st, _ in res), "the stuck updates are not answered 200",
         f"{[(u, st, round(dt, 2)) for u, st, dt in res]}")
    t.ok(any(st == 503 for _, st, _ in res), "they are answered 503",
         f"{sorted({str(st) for _, st, _ in res})}")


harness.run(main)
