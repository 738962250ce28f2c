#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# e2e-report.py OUT DRAIN_S WARNS MAX_RATE DRAIN_RATE PHASE... - the analysis
# of bench/run-e2e: joins loadgen's per-request intended send times
# (OUT/sends-PHASE.txt, CLOCK_REALTIME) with the Bot API stand-in's log of the
# replies (OUT/calls.txt: nginx's $msec $request_time $request_body, the
# update's id in the echoed text) and reads the /metrics samples
# (OUT/metrics.tsv). Prints the per-phase report with the target verdicts.
#
# An update counts from its intended send time inside the measured window to
# the arrival of its reply: nginx's $msec - $request_time, the millisecond
# the call's first bytes were read, truncated; 1 ms is added (the upper edge,
# never optimistic). A reply that never came, or came later than DRAIN_S after
# loadgen finished, is +Inf: it stays in the percentiles.
import json
import math
import os
import re
import sys

from measure import hist_delta, parse_metrics
from report import hist_bound
from stats import median

TARGET_RATE = 5000   # updates/s of the latency target
TARGET_P99_MS = 20.0

out, drain, warns = sys.argv[1], float(sys.argv[2]), sys.argv[3]
max_rate, drain_rate = sys.argv[4], sys.argv[5]
phases = sys.argv[6:]

arrivals = {}  # id -> first arrival (unix s)
dups = 0
ids_re = re.compile(r"e2e #(\d+)#")
with open(out + "/calls.txt") as f:
    for line in f:
        parts = line.split(" ", 2)
        if len(parts) < 3:
            continue
        m = ids_re.search(parts[2])
        if m is None:
            continue
        i = int(m.group(1))
        t = float(parts[0]) - float(parts[1])
        if i in arrivals:
            dups += 1
            arrivals[i] = min(arrivals[i], t)
        else:
            arrivals[i] = t

samples = []
with open(out + "/metrics.tsv") as f:
    for line in f:
        if not line.startswith("#"):
            samples.append([float(x) for x in line.split()])
(S_T, S_STORED, S_PROC, S_SENT, S_LAG, S_DEPTH, S_TCPU, S_PGCPU, S_APICPU, S_CLAIMS,
 S_STEAL) = range(11)

# tgring's histograms an update passes through on its way, in that order.
STAGES = [("inbox wait", "tgring_db_queue_seconds"),
          ("group commit", "tgring_db_commit_seconds"),
          ("claim", "tgring_processor_claim_seconds"),
          ("handler and wait for a commit", "tgring_processor_handle_seconds"),
          ("processing commit", "tgring_processor_commit_seconds"),
          ("sender wait", "tgring_outbox_wait_seconds"),
          ("Bot API call", "tgring_botapi_call_seconds")]


def snapshot(path):
    """A /metrics text file as {name_with_labels: value}; {} when it is missing."""
    try:
        with open(path) as f:
            return parse_metrics(f.read())
    except OSError:
        return {}


def stages(ph):
    """tgring's stage histograms over phase ph: 'name p50/p99 ms (n)' each, as bucket bounds."""
    m0 = snapshot("%s/metrics-%s-0.txt" % (out, ph))
    m1 = snapshot("%s/metrics-%s-1.txt" % (out, ph))
    if not m0 or not m1:
        return None
    parts = []
    for label, name in STAGES:
        h = hist_delta(m0, m1, name)
        n = h[-1][1] if h else 0
        parts.append("%s %s / %s (%d)" % (label, hist_bound(h, 0.5, 1000),
                                          hist_bound(h, 0.99, 1000), n))
    return parts


def pct(vals, q):
    """Nearest-rank percentile of a sorted list (inf included)."""
    if not vals:
        return float("nan")
    return vals[max(0, math.ceil(q / 100 * len(vals)) - 1)]


def fmt(ms):
    return "+Inf" if math.isinf(ms) else "%.2f" % ms


def verdict(ok):
    return "MET" if ok else "NOT MET"


lines = []
say = lines.append
target_p99s = []  # the target's p99 of each round, ms


def over(p99):
    """How far p99 (ms) misses the target, for a verdict line."""
    if p99 < TARGET_P99_MS:
        return ""
    if math.isinf(p99):
        return " (+Inf: replies missing)"
    return " (%.1f x the target, %.1f ms over)" % (p99 / TARGET_P99_MS, p99 - TARGET_P99_MS)


for ph in phases:
    lg = json.load(open("%s/loadgen-%s.json" % (out, ph)))
    with open("%s/sends-%s.txt" % (out, ph)) as f:
        head = f.readline().split()
        ws, we = int(head[-2]) / 1e9, int(head[-1]) / 1e9
        sends = [tuple(int(x) for x in l.split()) for l in f if l.strip()]
    lg_end = float(open("%s/end-%s.txt" % (out, ph)).read())
    deadline = lg_end + drain
    win = [(i, t / 1e9, st) for i, t, st in sends if ws <= t / 1e9 < we]
    acked = [(i, t) for i, t, st in win if 200 <= st < 300]
    not_acked = len(win) - len(acked)
    e2e, late, missing = [], 0, 0
    for i, t in acked:
        a = arrivals.get(i)
        if a is None:
            missing += 1
            e2e.append(math.inf)
        elif a > deadline:
            late += 1
            e2e.append(math.inf)
        else:
            e2e.append((a + 0.001 - t) * 1000)
    e2e.sort()
    all_acked = sum(1 for _, _, st in sends if 200 <= st < 300)
    all_replied = sum(1 for i, _, st in sends if 200 <= st < 300 and i in arrivals)

    inw = [s for s in samples if ws <= s[S_T] <= we]
    upto = [s for s in samples if ws <= s[S_T] <= deadline]
    closed = lg["intended_rate"] == 0
    title = "closed loop" if closed else "%.0f updates/s" % lg["intended_rate"]
    say("")
    say("%s: %s, %d connections, %.0f s window after %.0f s warm-up" %
        (ph, title, lg["connections"], lg["duration_s"], lg["warmup_s"]))
    say("   ack (loadgen, from the %s send time): %.0f/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms;"
        " non-2xx %d, errors %d, unsent %d" %
        ("actual" if closed else "intended", lg["rate"], lg["latency_ms"]["p50"],
         lg["latency_ms"]["p99"], lg["latency_ms"]["max"],
         sum(v for k, v in lg["status"].items() if not k.startswith("2")),
         lg["errors"], lg["unsent"]))
    say("   replies received: %d of %d updates acked in the window (missing %d, later than"
        " %.0f s after the run %d); all phases of this run: %d of %d" %
        (len(acked) - missing - late, len(acked), missing, drain, late, all_replied, all_acked))
    if e2e:
        say("   end-to-end (POST intended -> reply at the Bot API): p50 %s ms, p90 %s ms,"
            " p99 %s ms, p99.9 %s ms, max %s ms" %
            (fmt(pct(e2e, 50)), fmt(pct(e2e, 90)), fmt(pct(e2e, 99)), fmt(pct(e2e, 99.9)),
             fmt(e2e[-1])))
    keeps = None
    if len(inw) >= 2:
        a, b = inw[0], inw[-1]
        dt = b[S_T] - a[S_T]
        stored = (b[S_STORED] - a[S_STORED]) / dt
        proc = (b[S_PROC] - a[S_PROC]) / dt
        sent = (b[S_SENT] - a[S_SENT]) / dt
        backlog = [s[S_STORED] - s[S_PROC] for s in inw]
        lag = max(s[S_LAG] for s in upto)
        tcpu = (b[S_TCPU] - a[S_TCPU]) / dt
        pgcpu = (b[S_PGCPU] - a[S_PGCPU]) / dt
        apicpu = (b[S_APICPU] - a[S_APICPU]) / dt
        per = lambda c: c / proc * 1e6 if proc > 0 else float("nan")
        say("   processed %.0f updates/s (stored %.0f/s, replies sent %.0f/s) over the window"
            " (/metrics every 0.25 s)" % (proc, stored, sent))
        say("   processor backlog (stored - processed): max %d, at the window's end %d;"
            " tgring_processor_lag_seconds max %d s" % (max(backlog), backlog[-1], lag))
        claims = (b[S_CLAIMS] - a[S_CLAIMS]) / dt
        say("   claims: %.0f/s, %.1f updates processed per claim" %
            (claims, proc / claims if claims > 0 else float("nan")))
        say("   CPU: tgring %.0f %% of a core (%.1f us per update), PostgreSQL %.0f %%"
            " (%.1f us per update), the Bot API stand-in (nginx) %.0f %% (%.1f us per reply)"
            % (tcpu * 100, per(tcpu), pgcpu * 100, per(pgcpu), apicpu * 100,
               apicpu / sent * 1e6 if sent > 0 else float("nan")))
        say("   the host took %.1f %% of this machine's CPU time over the window (steal,"
            " /proc/stat): every process ran that much slower" %
            (100 * (b[S_STEAL] - a[S_STEAL]) / dt / (os.cpu_count() or 1)))
        if not closed:
            keeps = (proc >= 0.98 * stored and backlog[-1] <= lg["intended_rate"] and lag <= 1)
            say("   processing keeps up (processed >= 0.98 x stored, backlog at the end under"
                " 1 s of updates, lag <= 1 s): %s" % ("yes" if keeps else "NO"))
    st = stages(ph)
    if st:
        say("   tgring's stages over the phase, warm-up and drain included (its histograms: the"
            " bucket bounds holding p50 / p99, ms, and the count):")
        say("      " + "; ".join(st[:4]) + ";")
        say("      " + "; ".join(st[4:]))
    if ph.startswith("rate-") and lg["intended_rate"] == TARGET_RATE and e2e:
        p99 = pct(e2e, 99)
        target_p99s.append(p99)
        say("   TARGET end-to-end p99 < %.0f ms at %d updates/s%s: %s%s" %
            (TARGET_P99_MS, TARGET_RATE, " (this round)" if re.search(r"-r\d+$", ph) else "",
             verdict(p99 < TARGET_P99_MS), over(p99)))
    if ph.startswith("half-") and keeps is not None:
        say("   TARGET processing at least as fast as ingestion at the ingestion max's half"
            " rate: %s" % verdict(keeps))

say("")
if max_rate:
    say("ingestion max (closed loop, processing running): %s updates/s; the backlog it left"
        " drained at %s processed/s with nothing arriving" % (max_rate, drain_rate))
if len(target_p99s) > 1:
    med = median(target_p99s)
    say("TARGET end-to-end p99 < %.0f ms at %d updates/s, median of %d rounds: %s ms (rounds %s)"
        ": %s%s" % (TARGET_P99_MS, TARGET_RATE, len(target_p99s), fmt(med),
                    ", ".join(fmt(p) for p in target_p99s), verdict(med < TARGET_P99_MS),
                    over(med)))
if not target_p99s:
    say("TARGET end-to-end p99 < %.0f ms at %d updates/s: not measured (BENCH_E2E_RATE has no %d)"
        % (TARGET_P99_MS, TARGET_RATE, TARGET_RATE))
say("replies logged twice by the Bot API stand-in (at-least-once resends): %d" % dups)
print("\n".join(lines))
