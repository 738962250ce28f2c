# SPDX-License-Identifier: MIT
"""Faults under steady load, with the example bot (tgring-example), and the
books that must balance afterwards. Shared by tests/integration/test_chaos_short.py
(in the normal suite) and tests/chaos/chaos.py (the long run, tests/chaos/run).

A Chaos starts a migrated PostgreSQL, the Bot API stand-in and one
tgring-example on a fixed port (a restart keeps Telegram's webhook URL), then:

- Load: an open-loop sender. Update k is due at start + k/rate whether or not
  the server kept up; due updates wait for one of `conns` keep-alive
  connections. Each is a "/count" from one of `chats` chats (the example bot
  counts /count in echo_counters and answers "count: N"; other texts are only
  echoed). An update not answered 200 is posted again later, as Telegram
  does: after Retry-After on a 503, after 0.5 s on no answer. A chat's next
  update waits until its last one got its 200 (Telegram sends a chat's
  updates one at a time, as the other tests assume), unless ordered=False:
  then an update posted again may arrive after later ones of its chat.
- a sampler: /health/ready, VmRSS and the descriptors of the live tgring,
  every 0.25 s.
- faults: kill -9 and restart; PostgreSQL stopped with -m immediate and
  started; its backends ended with pg_terminate_backend; the postmaster and
  every backend frozen with SIGSTOP; the tablespace of `updates` (a small
  tmpfs) filled up.
- finish(): the load stopped, every update posted until it got its 200,
  everything processed and sent; then the checks (TAP, each can fail) and
  the figures.
"""

import asyncio
import atexit
import collections
import json
import os
import pwd
import random
import signal
import subprocess
import time

import botapi_helpers as bh
import harness
from bot_helpers import FAST_RATES, msg

PATH = "/webhook/telegram"
# Short leases so that a killed process's claims come back within seconds. The
# handler timeout stays at its default, above the longest outage (5 s and the
# restart): it counts the time a handler's read waits for the database, and an
# update whose handler times out is marked failed, its effects never made.
LEASES = {"TGRING_PROCESS_LEASE_MS": "12000", "TGRING_HANDLER_TIMEOUT_MS": "10000",
          "TGRING_OUTBOX_LEASE_MS": "3000"}
# A reply sent twice counts as in flight at a fault if its first call came
# within this long before the fault began, or before it ended (s).
IN_FLIGHT_S = 2.0
RSS_GROWTH_LIMIT_KB = 48 * 1024
SAMPLE_S = 0.25


class Load:
    """The open-loop sender (see the module's comment)."""

    def __init__(self, port, secret, rate, chats, conns, first_id, first_chat, ordered=True):
        self.port, self.secret = port, secret
        self.ordered = ordered
        self.waiting = collections.defaultdict(collections.deque)  # chat: its unacked ids
        self.rate, self.chats, self.conns = rate, chats, conns
        self.first_id, self.first_chat = first_id, first_chat
        self.generated = 0          # updates made so far: ids first_id .. first_id+generated-1
        self.acked = set()          # update ids answered 200 at least once
        self.events = []            # (start, end, update_id, outcome, Retry-After or None)
        self.queue = asyncio.Queue()
        self.retrying = 0           # updates waiting for their next post
        self.stopping = False
        self.tasks = []

    def chat(self, uid):
        return self.first_chat + (uid - self.first_id) % self.chats

    def start(self):
        self.t0 = time.monotonic()
        self.tasks = [asyncio.create_task(self._schedule())]
        self.tasks += [asyncio.create_task(self._conn()) for _ in range(self.conns)]

    async def _schedule(self):
        while not self.stopping:
            due = self.t0 + self.generated / self.rate
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
                continue
            uid = self.first_id + self.generated
            self.generated += 1
            chat = self.waiting[self.chat(uid)]
            chat.append(uid)
            if not self.ordered or len(chat) == 1:
                self.queue.put_nowait(uid)

    def _retry(self, uid, delay):
        self.retrying += 1

        def again():
            self.retrying -= 1
            self.queue.put_nowait(uid)
        asyncio.get_running_loop().call_later(delay, again)

    async def _conn(self):
        p = harness.Poster(self.port, PATH, self.secret)
        try:
            while True:
                uid = await self.queue.get()
                t0 = time.monotonic()
                st, resp, _ = await p.post(msg(uid, self.chat(uid), "/count"), timeout=15)
                ra = resp.header("retry-after") if isinstance(resp, harness.Response) else None
                self.events.append((t0, time.monotonic(), uid, st, ra))
                if st == 200:
                    self._acked(uid)
                elif st == 503 and (ra or "").strip().isdigit():
                    self._retry(uid, max(1, int(ra)))
                else:
                    self._retry(uid, 0.5)
        finally:
            p.close()

    def _acked(self, uid):
        if uid in self.acked:
            return
        self.acked.add(uid)
        chat = self.waiting[self.chat(uid)]
        chat.remove(uid)
        if self.ordered and chat:
            self.queue.put_nowait(chat[0])

    def unacked(self):
        return self.generated - len(self.acked)

    async def stop(self, timeout):
        """Stops making updates; waits up to `timeout` s until every one made
        got its 200. Returns True if they all did."""
        self.stopping = True
        ok = await bh.wait_for(lambda: self.unacked() == 0, timeout, 0.1)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        return bool(ok)

    def outcomes(self, since=0.0, until=float("inf")):
        return collections.Counter(str(e[3]) for e in self.events if since <= e[0] < until)


def fd_kinds(pid, listen_port, db_port, api_port):
    """The descriptors of `pid` by kind: {"clients", "db", "api", "other"}
    (TCP sockets by port from /proc/net/tcp; everything else is "other"), or
    None if the process is gone."""
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return None
    ports = {inode: (lp, rp) for inode, (lp, rp, state) in harness.tcp_sockets().items()
             if state != "0A"}  # not the listening socket
    out = {"clients": 0, "db": 0, "api": 0, "other": 0}
    for link in links:
        kind = "other"
        if link.startswith("socket:["):
            lp, rp = ports.get(link[8:-1], (None, None))
            if lp == listen_port:
                kind = "clients"
            elif rp == db_port:
                kind = "db"
            elif rp == api_port:
                kind = "api"
        out[kind] += 1
    return out


def pg_pids(pg):
    """The postmaster's pid and its children's."""
    with open(os.path.join(pg.data, "postmaster.pid")) as f:
        pm = int(f.readline())
    return pm, harness.children(pm)


class Chaos:
    def __init__(self, h, rate, chats, conns=32, ordered=True):
        self.h, self.t = h, h.t
        self.ordered = ordered
        self.rate, self.chats, self.conns = rate, chats, conns
        self.faults = []        # {"kind", "start", "end", ...}
        self.samples = []       # (time, pid, ready status, VmRSS kB, fd kinds)
        self.peak_hwm = 0       # VmHWM of every tgring, highest (kB)
        self.restarts = 0
        self.disk = None        # the tmpfs under the tablespace of `updates`

    async def start(self, disk_mb=0):
        h = self.h
        token = bh.random_token()
        secret = harness.random_secret()
        self.pg = h.postgres()
        h.migrate(self.pg.url())
        if disk_mb:
            self.disk = self._small_tablespace(disk_mb)
        self.api = bh.StandIn(h, token)
        self.port = harness.free_port()
        self.env = bh.send_env(h, self.pg, self.api, token, TELEGRAM_WEBHOOK_SECRET=secret,
                               TGRING_LISTEN=f"127.0.0.1:{self.port}", **FAST_RATES, **LEASES)
        self.srv = h.tgring(self.env, name="tgring-0", extra_asan={"quarantine_size_mb": "8"})
        self.t.ok(self.srv.wait_ready(30), "tgring-example is ready")
        first = random.randrange(10**9, 2 * 10**9)
        self.load = Load(self.port, secret, self.rate, self.chats, self.conns, first, 50000,
                         self.ordered)
        self.load.start()
        self.sampler = asyncio.create_task(self._sample())

    # -- sampling

    def _ready(self):
        try:
            return harness.http_get(self.port, "/health/ready", timeout=2)[0]
        except OSError as e:
            return type(e).__name__

    async def _sample(self):
        while True:
            pid = self.srv.pid
            ready = await asyncio.to_thread(self._ready)
            rss = harness.proc_status(pid, "VmRSS")
            hwm = harness.proc_status(pid, "VmHWM")
            if hwm:
                self.peak_hwm = max(self.peak_hwm, hwm)
            fds = fd_kinds(pid, self.port, self.pg.port, self.api.port)
            self.samples.append((time.monotonic(), pid, ready, rss, fds))
            await asyncio.sleep(SAMPLE_S)

    def steady_fds(self):
        """fd_kinds() of the live tgring now."""
        return fd_kinds(self.srv.pid, self.port, self.pg.port, self.api.port)

    # -- faults

    async def play(self, schedule, seconds):
        """Runs (seconds from the load's start, kind) in order, kind one of
        kill, stop, terminate, freeze, disk; returns `seconds` after the
        load's start."""
        for at, kind in schedule:
            await self._until(at)
            await getattr(self, "fault_" + kind)()
        await self._until(seconds)

    async def _until(self, at):
        await asyncio.sleep(max(0.0, self.load.t0 + at - time.monotonic()))

    def _fault(self, kind, start, **more):
        f = dict(kind=kind, start=start, end=time.monotonic(), **more)
        self.faults.append(f)
        self.h.t.diag(f"{kind} at {start - self.load.t0:.1f} s "
                      f"({f['end'] - start:.1f} s) {more or ''}")
        return f

    async def fault_kill(self):
        """SIGKILL at a random moment of the next second, then at once a new process."""
        await asyncio.sleep(random.random())
        old = self.srv
        hwm = harness.proc_status(old.pid, "VmHWM") or 0
        self.peak_hwm = max(self.peak_hwm, hwm)
        start = time.monotonic()
        old.signal(signal.SIGKILL)
        old.wait(10)
        self.restarts += 1
        self.srv = await asyncio.to_thread(
            self.h.tgring, self.env, name=f"tgring-{self.restarts}",
            extra_asan={"quarantine_size_mb": "8"})
        self._fault("kill", start, exit=old.proc.returncode)
        self.t.eq(old.proc.returncode, -signal.SIGKILL,
                  f"kill {self.restarts}: tgring died of SIGKILL")

    async def fault_stop(self, seconds=5.0):
        """PostgreSQL stopped with -m immediate, `seconds` later started again."""
        start = time.monotonic()
        await asyncio.to_thread(self.pg.stop, "immediate")
        down = time.monotonic()
        await asyncio.sleep(seconds)
        up = time.monotonic()
        await asyncio.to_thread(self.pg.start)
        self._fault("stop", start, down=down, up=up)

    async def fault_terminate(self):
        """pg_terminate_backend of every backend on tgring's database."""
        start = time.monotonic()
        n = await asyncio.to_thread(self.pg.scalar,
                                    "SELECT count(pg_terminate_backend(pid)) FROM "
                                    "pg_stat_activity WHERE datname = 'tgring' AND "
                                    "pid <> pg_backend_pid()")
        self._fault("terminate", start, backends=int(n or 0))

    async def fault_freeze(self, seconds=3.0):
        """SIGSTOP to the postmaster and every backend, SIGCONT `seconds` later."""
        start = time.monotonic()
        pm, kids = pg_pids(self.pg)
        os.kill(pm, signal.SIGSTOP)
        stopped = [pm]
        for pid in kids + harness.children(pm):
            if pid not in stopped:
                try:
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
                except ProcessLookupError:
                    pass
        await asyncio.sleep(seconds)
        for pid in reversed(stopped):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self._fault("freeze", start, processes=len(stopped))

    def _small_tablespace(self, mb):
        """A tmpfs of `mb` MiB holding the tablespace that `updates` and its
        indexes are moved to (before tgring starts). Returns its mount point."""
        d = self.h.mkdtemp("disk")
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m,mode=0700", "tmpfs", d],
                       check=True, capture_output=True, timeout=30)
        atexit.register(lambda: subprocess.run(["umount", "-l", d], capture_output=True))
        os.chown(d, *pwd.getpwnam("postgres")[2:4])
        self.pg.psql(f"CREATE TABLESPACE chaos LOCATION '{d}'", db="postgres")
        self.pg.psql("ALTER TABLE updates SET TABLESPACE chaos")
        for (idx,) in self.pg.psql("SELECT indexname FROM pg_indexes "
                                   "WHERE tablename = 'updates'"):
            self.pg.psql(f'ALTER INDEX "{idx}" SET TABLESPACE chaos')
        return d

    async def fault_disk(self, seconds=5.0):
        """The tablespace's tmpfs filled to the last byte, emptied `seconds` later."""
        start = time.monotonic()
        filler = os.path.join(self.disk, "filler")
        chunk = b"\0" * (1 << 16)
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError:
                pass
        full = time.monotonic()
        await asyncio.sleep(seconds)
        os.unlink(filler)
        self._fault("disk", start, full=full)

    # -- the end

    def _first_200_after(self, t):
        return min((e[1] for e in self.load.events if e[3] == 200 and e[0] >= t), default=None)

    async def finish(self, drain_s=180):
        """Stops the load, lets everything drain, checks the books; returns the figures."""
        t, pg, load = self.t, self.pg, self.load
        t_end = time.monotonic()
        all_acked = await load.stop(drain_s)
        t.ok(all_acked, f"every one of the {load.generated} updates got its 200 in the end",
             f"{load.unacked()} never did")
        stored_n = lambda: int(pg.scalar(f"SELECT count(*) FROM updates WHERE update_id >= "
                                         f"{load.first_id}"))
        done = await bh.wait_for(
            lambda: int(pg.scalar("SELECT count(*) FROM updates WHERE processed_at IS NULL "
                                  "AND failed_at IS NULL")) == 0, drain_s, 0.5)
        t.ok(done, "every stored update is processed or failed")
        sent = await bh.wait_for(lambda: bh.pending(pg) == 0, drain_s, 0.5)
        t.ok(sent, "every reply is sent or failed", lambda: f"{bh.pending(pg)} pending")
        drained = time.monotonic() - t_end
        # Idle now: no client connections, the pools as they settle.
        await asyncio.sleep(2)
        self.sampler.cancel()
        await asyncio.gather(self.sampler, return_exceptions=True)
        fig = self._books(stored_n())
        fig["from the load's end until every reply was sent (s)"] = round(drained, 1)
        self._fault_checks(fig, t_end)
        self._resources(fig)
        t.ok(self.srv.wait_ready(10), "/health/ready is 200 at the end")
        return fig

    def _books(self, stored_n):
        t, pg, load = self.t, self.pg, self.load
        made = set(range(load.first_id, load.first_id + load.generated))
        rows = pg.psql("SELECT update_id, chat_id, processed_at IS NOT NULL, "
                       "failed_at IS NOT NULL, coalesce(last_error, '') FROM updates "
                       f"WHERE update_id >= {load.first_id}")
        stored = {int(r[0]) for r in rows}
        missing = sorted(load.acked - stored)
        t.ok(not missing, "every update answered 200 is in `updates`",
             f"{len(missing)} of {len(load.acked)} missing, e.g. {missing[:10]}")
        t.ok(stored <= made, "nothing is stored that was not posted")
        failed = [(r[0], r[4]) for r in rows if r[3] == "t"]
        processed = sum(1 for r in rows if r[2] == "t" and r[3] == "f")
        t.eq(processed, len(stored), "every stored update is processed, none failed",
             f"failed: {len(failed)}, e.g. {failed[:5]}")
        per_chat = collections.Counter(int(r[1]) for r in rows)
        counters = {int(r[0]): int(r[1]) for r in pg.psql(
            "SELECT chat_id, n FROM echo_counters")}
        t.eq(sum(counters.values()), len(stored),
             "the counters add up to the stored /count updates: each counted once")
        bad = [c for c in per_chat if counters.get(c) != per_chat[c]]
        t.ok(not bad, "each chat's counter equals its stored updates",
             lambda: f"chat {bad[0]}: counter {counters.get(bad[0])}, stored {per_chat[bad[0]]}")

        outbox = collections.defaultdict(list)
        for r in bh.rows(pg):
            outbox[r["chat_id"]].append((json.loads(r["body"])["text"], r["sent"], r["failed"]))
        bad = [c for c in per_chat if sorted(x[0] for x in outbox[c]) !=
               sorted(f"count: {i}" for i in range(1, per_chat[c] + 1))]
        t.ok(not bad, "each chat's outbox holds count: 1..N once each (N its stored updates)",
             lambda: f"chat {bad[0]}: {sorted(x[0] for x in outbox[bad[0]])[:20]}")
        queued = sum(len(v) for v in outbox.values())
        unsent = [(c, x) for c, v in outbox.items() for x in v if not x[1] or x[2]]
        t.ok(not unsent, "every queued reply is marked sent, none failed", repr(unsent[:5]))

        first = {}
        calls = collections.Counter()
        with open(self.api.record, encoding="utf-8") as f:
            for line in f:
                c = json.loads(line)
                if c.get("method") != "sendMessage" or c.get("status") != 200:
                    continue
                key = (int(c["body"]["chat_id"]), c["body"]["text"])
                calls[key] += 1
                first.setdefault(key, c["time"])
        lost = [(c, x[0]) for c, v in outbox.items() for x in v if calls[(c, x[0])] == 0]
        t.ok(not lost, "every queued reply reached the Bot API at least once",
             f"{len(lost)} did not, e.g. {lost[:5]}")
        dups = {k: n for k, n in calls.items() if n > 1}
        # The stand-in's times are time.time(); the faults' are monotonic.
        off = time.time() - time.monotonic()
        stray = [k for k in dups if not any(
            f["start"] - IN_FLIGHT_S <= first[k] - off <= f["end"] + IN_FLIGHT_S
            for f in self.faults)]
        t.ok(not stray, f"only replies in flight at a fault went out twice "
             f"({len(dups)} did)", f"{len(stray)} others, e.g. {stray[:5]}")
        oc = load.outcomes()
        return {
            "updates made": load.generated, "requests posted": len(load.events),
            "answered 200": oc["200"], "distinct updates acked": len(load.acked),
            "answered 503": oc["503"],
            "answered 500": oc["500"],
            "other answers": sum(v for k, v in oc.items() if k not in ("200", "503", "500")
                                 and k.isdigit()),
            "no answer (refused, closed, timeout)": sum(v for k, v in oc.items()
                                                        if not k.isdigit()),
            "stored": stored_n, "processed": processed, "failed": len(failed),
            "counter total": sum(counters.values()), "replies queued": queued,
            "replies sent (calls answered 200)": sum(calls.values()),
            "duplicate replies": sum(n - 1 for n in dups.values()),
            "replies sent twice or more": len(dups),
        }

    def _fault_checks(self, fig, t_end):
        t, load = self.t, self.load
        no_ra = [e for e in load.events if e[3] == 503 and not (e[4] or "").strip().isdigit()]
        t.ok(not no_ra, "every 503 carries Retry-After in seconds",
             f"{len(no_ra)} without, e.g. {no_ra[:3]}")
        kills = [f for f in self.faults if f["kind"] == "kill"]
        odd = [e for e in load.events if not str(e[3]).isdigit() and not any(
            f["start"] - 0.1 <= e[1] <= f["end"] + 2 for f in kills)]
        t.ok(not odd, "requests went unanswered only around a kill",
             f"{len(odd)} others, e.g. {[(round(e[0] - load.t0, 2), e[3]) for e in odd[:5]]}")
        disk = [f for f in self.faults if f["kind"] == "disk"]
        bad500 = [e for e in load.events if e[3] == 500 and not any(
            f["start"] <= e[1] <= f["end"] + 2 for f in disk)]
        t.ok(not bad500, "500 only while the disk was full", f"{len(bad500)}: {bad500[:3]}")
        others = [e for e in load.events if str(e[3]).isdigit() and e[3] not in (200, 503, 500)]
        t.ok(not others, "no answer other than 200, 503 and 500", repr(others[:5]))

        recovery = []
        for f in self.faults:
            f["answers"] = load.outcomes(f["start"], f["end"] + 1)
            f["back"] = self._first_200_after(f["end"])
            if f["kind"] == "kill":
                continue
            back = f["back"]
            t.ok(back is not None, f"{f['kind']} at {f['start'] - load.t0:.1f} s: 200s "
                 "resume by themselves afterwards")
            if back is not None:
                recovery.append(back - f["end"])
            if f["kind"] == "stop":
                # The server notices at once (the connections break); from 1 s
                # after the stop until the start, everything says "not ready".
                lo, hi = f["down"] + 1.0, f["up"]
                ready = [s[2] for s in self.samples if lo <= s[0] <= hi]
                t.ok(ready and all(r == 503 for r in ready),
                     f"/health/ready is 503 while PostgreSQL is stopped ({len(ready)} samples)",
                     repr(ready))
                posts = collections.Counter(str(e[3]) for e in load.events
                                            if lo <= e[0] and e[1] <= hi)
                t.ok(posts and set(posts) == {"503"},
                     f"every update posted while it is stopped is answered 503 "
                     f"({sum(posts.values())})", repr(posts))
        fig["longest recovery after a database fault (s)"] = \
            round(max(recovery), 2) if recovery else "-"
        frozen = [s[2] for s in self.samples for f in self.faults
                  if f["kind"] == "freeze" and f["start"] + 0.5 <= s[0] <= f["end"]]
        fig["/health/ready while frozen (503 of samples)"] = \
            f"{sum(1 for r in frozen if r == 503)} of {len(frozen)}"
        down = [s[2] for s in self.samples for f in self.faults
                if f["kind"] == "stop" and f["down"] + 1.0 <= s[0] <= f["up"]]
        fig["/health/ready while stopped (503 of samples)"] = \
            f"{sum(1 for r in down if r == 503)} of {len(down)}"

    def _resources(self, fig):
        """RSS and descriptors of the process that lived through the database
        faults: the peak against the last sample before the first of them, and
        the descriptors at the end against that sample."""
        t = self.t
        pid = self.srv.pid
        first_db = min((f["start"] for f in self.faults if f["kind"] != "kill"), default=None)
        mine = [s for s in self.samples if s[1] == pid and s[3]]
        before = [s for s in mine if first_db is None or s[0] < first_db]
        base = before[-1] if before else (mine[0] if mine else None)
        peak = max((s[3] for s in mine), default=None)
        hwm = harness.proc_status(pid, "VmHWM")
        self.peak_hwm = max(self.peak_hwm, hwm or 0)
        end = self.steady_fds()
        fig["VmRSS before the database faults (kB)"] = base[3] if base else "-"
        fig["VmRSS peak since (kB)"] = peak
        fig["VmHWM highest of all processes (kB)"] = self.peak_hwm
        if base:
            t.ok(peak - base[3] < RSS_GROWTH_LIMIT_KB,
                 f"VmRSS grew less than {RSS_GROWTH_LIMIT_KB // 1024} MiB through the faults",
                 f"{base[3]} kB before, {peak} kB at the peak")
        fig["fds before (db/api/other/clients)"] = _fds(base[4] if base else None)
        fig["fds after, idle (db/api/other/clients)"] = _fds(end)
        if base and base[4] and end:
            b = base[4]
            # At most: a sample may catch a descriptor of the moment (a
            # connection being opened) that an idle process no longer has.
            t.ok(end["other"] <= b["other"] and end["db"] == b["db"] and end["clients"] == 0,
                 "descriptors are back to the baseline: as many database connections, no "
                 "more of the rest, no client left", f"before {b}, after {end}")
            cap = int(self.env.get("TGRING_API_CONNECTIONS", 8))
            t.ok(end["api"] <= cap, f"at most {cap} Bot API connections", repr(end))

    def figures_table(self, fig, title):
        kinds = collections.Counter(f["kind"] for f in self.faults)
        names = {"kill": "kill -9 and restart", "stop": "PostgreSQL stopped -m immediate (5 s)",
                 "terminate": "pg_terminate_backend (all of tgring's backends)",
                 "freeze": "PostgreSQL frozen by SIGSTOP (3 s)",
                 "disk": "tablespace of `updates` full (5 s)"}
        lines = [f"### {title}", "", "| figure | value |", "| --- | --- |"]
        for k, name in names.items():
            extra = ""
            if k == "terminate" and kinds[k]:
                extra = f" ({sum(f['backends'] for f in self.faults if f['kind'] == k)} " \
                        "backends)"
            lines.append(f"| faults: {name} | {kinds[k]}{extra} |")
        for k, v in fig.items():
            lines.append(f"| {k} | {v} |")
        lines += ["", "| fault | at (s) | lasted (s) | answers from its start to 1 s after "
                  "its end | first 200 after its end (s) |", "| --- | --- | --- | --- | --- |"]
        for f in self.faults:
            answers = ", ".join(f"{k}: {v}" for k, v in sorted(f.get("answers", {}).items()))
            back = f"{f['back'] - f['end']:.2f}" if f.get("back") else "-"
            lines.append(f"| {f['kind']} | {f['start'] - self.load.t0:.1f} | "
                         f"{f['end'] - f['start']:.1f} | {answers or '-'} | {back} |")
        return "\n".join(lines) + "\n"


def _fds(k):
    return "-" if not k else f"{k['db']}/{k['api']}/{k['other']}/{k['clients']}"
