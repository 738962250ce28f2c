#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""botapi_faults.py - the Bot API misbehaving under a running tgring (the
long version; not in CI; its short version is
tests/integration/test_chaos_botapi.py).

The example bot (tgring-example, examples/echo) runs against the Bot API
stand-in (tests/standin/botapi.py) over TLS with the test CA. Each phase
queues replies both ways, as outbox rows inserted into PostgreSQL and as
echoes of updates posted to the webhook, while the stand-in misbehaves:

  baseline        no fault
  429 chat        429 storms for half the chats (retry_after 1 s, 3 in a row)
  429 global      429 for the next calls of any chat (retry_after 2 s)
  5xx             502 (JSON) and 503 (a proxy's HTML page) bursts; one chat
                  answered 403 "bot was blocked" (final)
  slow            answers later than the call deadline (TGRING_OUTBOX_LEASE_MS
                  4000: a call's deadline is 1.8 s)
  reset           answers cut mid-body (with and without close_notify) and
                  connections reset without an answer
  handshake       the stand-in replaced by a listener that fails every TLS
                  handshake (an alert, plain HTTP, a close), for a while
  unknown CA      the stand-in replaced, on the same port, by one whose
                  certificate comes from a CA tgring does not trust

and then the stand-in is back to normal. Checked, from the stand-ins'
recorded arrival times and the outbox:
- no configured rate limit exceeded (global, per chat, per group; windows
  50 ms shorter than the limits', as in test_send_rates.py) and no call to
  a chat within retry_after of its 429;
- nothing lost: every row ends sent (and then a call with its text was
  answered 200) or failed, and failed only in the chat whose fault is final,
  with the reason in last_error; every posted update processed;
- nothing sent over an unverified connection: the unknown-CA stand-in
  records no call, and the failing listener never gets past a handshake;
- the sender catches up once the fault ends (catch-up: from the fault's end
  to the phase's last row settled).

A table of figures per phase goes to stdout (TAP comment lines).

Usage (about 4 minutes):
  TGRING_BIN=build/examples/echo/tgring-example /usr/bin/python3 tests/chaos/botapi_faults.py
Only the Python standard library is used.
"""

import asyncio
import collections
import json
import socket
import threading
import time

from chaos_measure import report

import botapi_helpers as bh
import harness
from bot_helpers import msg, processed
from test_send_rates import JITTER

# A 429's pause may come out a few ms short: the reactor's clock has ms resolution.
CLOCK_SLACK = 0.01
BLOCKED = "Forbidden: bot was blocked by the user"
LEASE_MS = 4000
CALL_DEADLINE_S = LEASE_MS * 0.45 / 1000


class Scale:
    def __init__(self, chats, groups, per_chat, echo_chats, outage_s, burst, settle_s,
                 retry_global, rate_global, rate_chat, rate_group, phases, slow=None,
                 api_conns=8):
        self.chats = [10**7 + i for i in range(chats)] + [-(10**12 + i) for i in range(groups)]
        self.per_chat = per_chat
        self.echo_chats = [2 * 10**7 + i for i in range(echo_chats)]
        self.outage_s = outage_s        # how long the stand-in is away, s
        self.burst = burst              # faulty answers per behaviour
        self.settle_s = settle_s        # longest wait for a phase's rows, s
        self.retry_global = retry_global  # retry_after of the 429 to any chat, s
        # (calls, window s) per limit, as tgring is configured; burst 1 each.
        self.rates = {"TELEGRAM_RATE_GLOBAL": rate_global, "TELEGRAM_RATE_CHAT": rate_chat,
                      "TELEGRAM_RATE_GROUP": rate_group}
        self.phases = phases
        self.slow = slow or burst        # answers past the deadline in the short phase
        self.api_conns = api_conns       # TGRING_API_CONNECTIONS


def rate_env(n, window):
    return f"{n}/{'s' if window == 1 else 'min'},burst=1"


LONG = Scale(chats=30, groups=3, per_chat=4, echo_chats=10, outage_s=20, burst=12, settle_s=90, retry_global=2,
             rate_global=(30, 1), rate_chat=(1, 1), rate_group=(20, 60),
             phases=["baseline", "429 chat", "429 global", "5xx", "slow", "reset",
                     "handshake", "unknown CA"])
SHORT = Scale(chats=6, groups=1, per_chat=2, echo_chats=3, outage_s=2.5, burst=3, settle_s=25, retry_global=1,
              rate_global=(20, 1), rate_chat=(4, 1), rate_group=(60, 60),
              phases=["answers", "handshake", "unknown CA"], slow=3, api_conns=2)

FINAL_CHAT = 3 * 10**7


def behaviours(phase, scale):
    """The stand-in's behaviours for an answer phase, chat-specific first."""
    sm = {"method": "sendMessage"}
    n = scale.burst
    per_chat = [dict(sm, mode="429", chat_id=c, retry_after=1, count=3)
                for c in scale.chats[::2]]
    out = {
        "baseline": [],
        "429 chat": per_chat,
        "429 global": [dict(sm, mode="429_global", retry_after=scale.retry_global, count=n)],
        "5xx": [dict(sm, mode="final", chat_id=FINAL_CHAT, status=403, description=BLOCKED),
                dict(sm, mode="5xx", status=502, count=n),
                dict(sm, mode="5xx", status=503, html=True, count=n)],
        "slow": [dict(sm, mode="slow", delay_ms=int(CALL_DEADLINE_S * 1000) + 1500, count=n)],
        "reset": [dict(sm, mode="truncate", count=n),
                  dict(sm, mode="truncate", close_notify=True, count=n),
                  dict(sm, mode="reset", count=n)],
    }
    if phase == "answers":
        # The short version: all of them at once, fewer of each.
        return (per_chat[:2] + out["5xx"][:1] +
                [dict(sm, mode="429_global", retry_after=scale.retry_global, count=2),
                 dict(sm, mode="5xx", status=502, count=n),
                 dict(sm, mode="5xx", status=503, html=True, count=1),
                 dict(sm, mode="slow", delay_ms=int(CALL_DEADLINE_S * 1000) + 1500,
                      count=scale.slow),
                 dict(sm, mode="truncate", count=1), dict(sm, mode="reset", count=1)])
    return out[phase]


class FailingListener:
    """A TCP listener on `port` that fails every TLS handshake, taking turns:
    a handshake_failure alert, a plain HTTP answer, a close with no byte."""

    ANSWERS = (b"\x15\x03\x03\x00\x02\x02\x28",
               b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
               b"")

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with c:
                c.settimeout(2)
                try:
                    c.recv(4096)  # the ClientHello
                    c.sendall(self.ANSWERS[self.accepted % len(self.ANSWERS)])
                except OSError:
                    pass
            self.accepted += 1

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


class Run:
    def __init__(self, h, scale, token, secret, pg, api, srv):
        self.h, self.t, self.scale = h, h.t, scale
        self.token, self.secret, self.pg, self.api, self.srv = token, secret, pg, api, srv
        self.port = api.port
        self.old_calls = []  # calls of the stand-ins replaced so far
        self.update_id = 1000
        self.posted = 0
        self.poster = harness.Poster(srv.port, "/webhook/telegram", secret)
        self.figures = []

    def calls(self):
        return self.old_calls + self.api.calls()

    def replace_standin(self, make):
        """Stops the stand-in (keeping its calls) and puts make() on its port."""
        self.old_calls += self.api.calls()
        self.api.stop()
        return make()

    def standin(self, **kw):
        return bh.StandIn(self.h, self.token, extra=["--port", str(self.port)], **kw)

    async def queue(self, phase):
        """Inserts this phase's rows and posts its updates; returns the markers."""
        tag = phase.replace(" ", "")
        rows = [(c, "sendMessage", bh.message(c, f"{tag}-{c}-{i}"))
                for i in range(self.scale.per_chat) for c in self.scale.chats]
        if phase in ("5xx", "answers"):
            rows += [(FINAL_CHAT, "sendMessage", bh.message(FINAL_CHAT, f"{tag}-final-{i}"))
                     for i in range(2)]
        bh.insert_rows(self.pg, rows)
        markers = [b["text"].rsplit("[", 1)[1][:-1] for _, _, b in rows]
        for c in self.scale.echo_chats:
            self.update_id += 1
            m = f"{tag}-e{c}"
            status, resp, _ = await self.poster.post(msg(self.update_id, c, f"echo [{m}]"))
            self.t.eq(status, 200, f"{phase}: update {self.update_id} stored")
            self.posted += 1
            markers.append(m)
        return markers

    def settled(self):
        return bh.pending(self.pg) == 0 and processed(self.pg) == self.posted

    async def phase(self, phase):
        t, scale = self.t, self.scale
        outage = phase in ("handshake", "unknown CA")
        seq0 = len(self.calls())
        if outage:
            failing = self.replace_standin(
                lambda: FailingListener(self.port) if phase == "handshake"
                else self.standin(cert="server-other", name="botapi-unknown-ca"))
        else:
            self.api.behave(*behaviours(phase, scale))
        t0 = time.time()
        markers = await self.queue(phase)
        if outage:
            await asyncio.sleep(scale.outage_s)
            if phase == "handshake":
                tried = failing.accepted
            else:
                st, got = failing.stats(), failing.calls()
                tried = st["handshake_failures"]
                t.eq(len(got), 0, "unknown CA: the stand-in recorded no call (nothing was sent "
                     "over the unverified connection)", lambda: repr(got[:3]))
            failing.stop()
            t.ok(tried >= 1, f"{phase}: tgring kept trying ({tried} failed handshakes in "
                 f"{scale.outage_s} s)")
            self.api = self.standin()
            fault_end = time.time()
        done = await bh.wait_for(self.settled, scale.settle_s, 0.1)
        t_done = time.time()
        t.ok(done, f"{phase}: every row settled and every update processed within "
             f"{scale.settle_s} s", lambda: repr([r for r in bh.rows(self.pg)
                                                  if not r["sent"] and not r["failed"]][:5]))
        calls = self.calls()[seq0:]
        faulty = [c for c in calls if c.get("mode")]
        if not outage:
            fault_end = max([c["time"] for c in faulty], default=t0)
            left = self.api.behaviours_left()
            self.api.clear_behaviours()
            # The final behaviour never runs out; the others should have been used up.
            t.ok(all(b["mode"] == "final" for b in left),
                 f"{phase}: every faulty answer was given", repr(left))
        catch_up = t_done - fault_end
        limit = scale.outage_s * 2 + 15 if outage else scale.settle_s
        t.ok(done and catch_up <= limit,
             f"{phase}: caught up {catch_up:.1f} s after the fault ended (bound {limit:.0f} s)")
        self.figures.append({"phase": phase, "rows": len(markers), "calls": len(calls),
                             "faulty": len(faulty), "t0": t0, "t_done": t_done,
                             "catch_up": catch_up, "markers": markers})


def limit_violations(calls, scale):
    """{limit: [description of each call that broke it]} over `calls`, every
    call the stand-in recorded counted, also one cut with no answer: tgring
    never sends a Bot API call again behind its limits."""
    sends = sorted((c for c in calls if isinstance(c.get("body"), dict) and
                    c["body"].get("chat_id") is not None),
                   key=lambda c: c["time"])
    out = collections.defaultdict(list)

    def over(name, times, n, window):
        # Each call that makes more than n in a window [t, t + window - JITTER).
        j = 0
        for i in range(len(times)):
            while times[i] - times[j] >= window - JITTER:
                j += 1
            if i - j + 1 > n:
                out[name].append(f"{name}: {i - j + 1} calls in "
                                 f"{times[i] - times[j]:.3f} s ending at {times[i]:.3f}")

    over("global", [c["time"] for c in sends], *scale.rates["TELEGRAM_RATE_GLOBAL"])
    per_chat = collections.defaultdict(list)
    for c in sends:
        per_chat[str(c["body"]["chat_id"])].append(c)
    for chat, cs in per_chat.items():
        times = [c["time"] for c in cs]
        n, window = scale.rates["TELEGRAM_RATE_CHAT"]
        over("chat", times, 1, window / n)
        if int(chat) < 0:
            n, window = scale.rates["TELEGRAM_RATE_GROUP"]
            over("group", times, 1, window / n)
        for a in cs:
            if a["status"] != 429:
                continue
            pause = scale.retry_global if a["mode"] == "429_global" else 1
            early = [b for b in cs if a["time"] < b["time"] < a["time"] + pause - CLOCK_SLACK]
            out["429 pause"] += [f"chat {chat}: a call {b['time'] - a['time']:.3f} s after "
                                 f"a 429 of {pause} s" for b in early]
    return out


def lost_rows(run, calls):
    """Descriptions of what was lost: rows neither sent nor failed, rows
    failed for a fault that is not final, rows sent with no call answered 200,
    updates not processed."""
    delivered = collections.Counter()
    for c in calls:
        text = (c.get("body") or {}).get("text") if isinstance(c.get("body"), dict) else None
        if c["status"] == 200 and isinstance(text, str) and text.endswith("]"):
            delivered[text[text.rindex("[") + 1:-1]] += 1
    out = []
    for r in bh.rows(run.pg):
        text = json.loads(r["body"]).get("text", "")
        marker = text[text.rindex("[") + 1:-1] if text.endswith("]") else text
        if not r["sent"] and not r["failed"]:
            out.append(f"row {r['id']} ({marker}) neither sent nor failed")
        elif r["failed"] and (r["chat_id"] != FINAL_CHAT or BLOCKED not in r["last_error"]):
            out.append(f"row {r['id']} ({marker}) failed: {r['last_error']!r}")
        elif r["sent"] and not delivered[marker]:
            out.append(f"row {r['id']} ({marker}) marked sent, no call answered 200")
    gone = run.posted - processed(run.pg)
    if gone:
        out.append(f"{gone} updates not processed")
    return out


async def run_faults(h, scale):
    """Runs the phases of `scale`; checks and reports them."""
    t = h.t
    token, secret, pg, api = bh.setup(h)
    srv = h.tgring(bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret,
                               TGRING_OUTBOX_LEASE_MS=LEASE_MS,
                               TGRING_API_CONNECTIONS=scale.api_conns,
                               **{k: rate_env(*v) for k, v in scale.rates.items()}))
    t.ok(srv.wait_ready(30), "tgring (the example bot) is ready")
    await bh.wait_for(lambda: api.calls("getMe"), 15)
    run = Run(h, scale, token, secret, pg, api, srv)
    for phase in scale.phases:
        await run.phase(phase)
    run.poster.close()

    calls = run.calls()
    bad = limit_violations(calls, scale)
    for name in ("global", "chat", "group", "429 pause"):
        t.ok(not bad[name], f"no {name} limit exceeded ({len(bad[name])} calls over it)",
             "\n".join(bad[name][:10]))
    lost = lost_rows(run, calls)
    t.ok(not lost, f"nothing lost ({len(lost)} rows or updates)", "\n".join(lost[:10]))
    failed = [r for r in bh.rows(pg) if r["failed"]]
    t.eq(len(failed), 2, "exactly the two rows of the blocked chat failed, with the reason",
         repr(failed))
    t.ok(all(c["tls"] for c in calls), "every call the stand-ins recorded came over TLS")
    t.ok(run.api.calls() and run.api.calls()[-1]["status"] == 200,
         "the stand-in back to normal answers again")

    m = srv.metrics()
    names = ("sent", "retried", "failed", "limited", "global_pauses")
    counts = {n: harness.metric(m, f"tgring_outbox_{n}_total") for n in names}
    counts["tls_failures"] = harness.metric(m, "tgring_tls_failures_total")
    counts["timeouts"] = harness.metric(m, "tgring_botapi_timeouts_total")
    t.diag("metrics: " + ", ".join(f"{k} {v:.0f}" for k, v in counts.items() if v is not None))
    t.ok((counts["timeouts"] or 0) >= 1, "calls past the deadline were given up "
         f"(tgring_botapi_timeouts_total {counts['timeouts']})")
    t.ok((counts["tls_failures"] or 0) >= 2, "failed handshakes are counted "
         f"(tgring_tls_failures_total {counts['tls_failures']})")
    t.eq(srv.stop(), 0, "tgring stops cleanly (exit 0)")
    bh.scan_secrets(h, [token, secret])

    rows = []
    for f in run.figures:
        window = [c for c in calls if f["t0"] <= c["time"] <= f["t_done"]]
        phase_bad = limit_violations(window, scale)
        phase_lost = [x for x in lost if any(f"({m})" in x for m in f["markers"])]
        rows.append([f["phase"], f["rows"], f["calls"], f["faulty"],
                     sum(len(v) for v in phase_bad.values()), len(phase_lost),
                     f"{f['catch_up']:.1f}", f"{f['t_done'] - f['t0']:.1f}"])
    report("Bot API faults (rates " + ", ".join(f"{k.split('_')[-1].lower()} {rate_env(*v)}"
                                                for k, v in scale.rates.items()) + ")",
           ["phase", "rows", "calls", "faulty answers", "rate-limit violations", "lost rows",
            "catch-up s", "phase s"], rows)


if __name__ == "__main__":
    bh.run(lambda h: run_faults(h, LONG))
