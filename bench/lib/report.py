# SPDX-License-Identifier: MIT
"""report.md and the PNG plots of one bench/run results directory, from its
results.json and raw/ files. Also runnable by itself: python3 report.py DIR."""

import json
import os
import subprocess
import sys

from stats import median, ratio_summary

PCTS = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999))


def fmt(v, nd=1):
    if v is None:
        return "—"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:,.{nd}f}" if isinstance(v, float) else f"{v:,}"


def spectrum(raw, run):
    """(latency ms, 1/(1-p)) points of a run: its HdrHistogram percentile file when the
    generator wrote one (the 2xx one when there is one; values in ms), else the percentiles
    of its JSON summary."""
    base = os.path.join(raw, run["label"])
    # tgload --hgrm FILE: FILE for every response, a second file for the 2xx ones only.
    hgrm = next((f for f in (base + ".hgrm.2xx.hgrm", base + ".2xx.hgrm", base + ".hgrm")
                 if os.path.exists(f)), None)
    pts = []
    if hgrm:
        for line in open(hgrm):
            p = line.split()
            if len(p) == 4:
                try:
                    v, q = float(p[0]), float(p[1])
                except ValueError:
                    continue
                if q < 1:
                    pts.append((v, 1 / (1 - q)))
        if pts:
            return pts, "hgrm"
    for k, q in PCTS:
        pts.append((run["latency_ms"][k], 1 / (1 - q)))
    return pts, "json"


class Report:
    def __init__(self, out):
        self.out = out
        self.raw = os.path.join(out, "raw")
        self.r = json.load(open(os.path.join(out, "results.json")))
        self.lines = []
        self.plots = []      # PNGs that were to be made
        self.missing = []

    def w(self, s=""):
        self.lines.append(s)

    # ---- plots --------------------------------------------------------------------------

    def gnuplot(self, png, script):
        path = os.path.join(self.out, png)
        self.plots.append(png)
        r = subprocess.run(["gnuplot"], input=f"set terminal png size 900,560\nset output '{path}'\n"
                           + script, text=True, stderr=subprocess.PIPE)
        if r.returncode != 0 or not os.path.exists(path):
            self.missing.append(png)
            self.w(f"_{png} could not be drawn: {r.stderr.strip()[:300]}_")
            return
        self.w(f"![{png}]({png})")
        self.w()

    def spectrum_plot(self, name, series):
        """series: [(title, run)], every one on one log-log chart."""
        plots, sources = [], set()
        for i, (title, run) in enumerate(series):
            pts, src = spectrum(self.raw, run)
            sources.add(src)
            dat = os.path.join(self.raw, f"spectrum-{name}-{i}.dat")
            with open(dat, "w") as f:
                f.write("# latency_ms 1/(1-percentile)\n")
                f.writelines(f"{v} {x}\n" for v, x in pts)
            plots.append(f"'{dat}' using 2:1 with linespoints title '{title}'")
        if not plots:
            self.w(f"_No percentile spectrum for {name}: no runs._")
            return
        self.w(f"Percentile spectrum ({' and '.join(sorted(sources))} percentiles):")
        self.w()
        self.gnuplot(f"spectrum-{name}.png", f"""
set title 'latency by percentile: {name}'
set logscale x
set logscale y
set xlabel 'percentile'
set ylabel 'latency (ms)'
set xtics ('50%%' 2, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000, '99.999%%' 100000)
set key top left
set grid
plot {', '.join(plots)}
""")

    # ---- tables -------------------------------------------------------------------------

    def paired_table(self, runs, metrics):
        """runs: {server: [run per round]}; one row per peer and metric."""
        tg = runs.get("tgring", [])
        self.w("| compared | metric | tgring (median) | peer (median) | ratio tgring/peer "
               "(median of pairs) | 95 % interval | pairs |")
        self.w("|---|---|---|---|---|---|---|")
        for peer, pruns in runs.items():
            if peer == "tgring":
                continue
            for title, get in metrics:
                a, b = [get(x) for x in tg], [get(x) for x in pruns]
                s = ratio_summary(a, b)
                self.w(f"| {peer} | {title} | {fmt(median_of(a), 2)} | {fmt(median_of(b), 2)} | "
                       + (f"{s['median']:.3f} | {s['lo']:.3f}–{s['hi']:.3f} | {s['n']} |" if s
                          else "— | — | 0 |"))
        if len(runs) == 1:
            for title, get in metrics:
                self.w(f"| (no peer) | {title} | {fmt(median_of([get(x) for x in tg]), 2)} | — "
                       "| — | — | — |")
        self.w()

    def run_table(self, runs):
        self.w("| run | intended/s | achieved/s | p50 ms | p99 ms | max ms | non-2xx | errors "
               "| server µs/req | PostgreSQL µs/req | generator µs/req | WAL flushes "
               "| WAL flush time share | checkpoints, autovacuums | CPU stolen by the host "
               "| bound |")
        self.w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for x in runs:
            w, lat = x["window"], x.get("latency_ms", {})
            g = lambda d, k: "—" if d.get(k) is None else d[k]
            errs = x["errors"] + x["unsent"] if "errors" in x else "—"
            self.w(f"| {x['label']} | {fmt(x['intended_rate'], 0) if x['intended_rate'] else 'closed'} "
                   f"| {fmt(x['rate'], 0)} | {g(lat, 'p50')} | {g(lat, 'p99')} | {g(lat, 'max')} "
                   f"| {g(x, 'non2xx')} | {errs} "
                   f"| {fmt(w.get('srv_us_per_req'))} | {fmt(w.get('pg_us_per_req'))} "
                   f"| {fmt(w.get('gen_us_per_req'))} | {g(w, 'wal_sync')} | {g(w, 'wal_flush_share')} "
                   f"| {g(w, 'checkpoints')}, {g(w, 'autovacuums')} "
                   f"| {g(w, 'steal_share')} | {g(w, 'bound')} |")
        self.w()

    def stage_table(self, runs):
        """Where tgring's share of each run's tail went, from its own histograms (bucket
        bounds: "≤"; the whole run, warm-up included)."""
        runs = [x for x in runs if x.get("tgring_queue")]
        if not runs:
            return
        self.w()
        self.w("Where the tail went, per tgring round: the generator's p99, split into the wait "
               "for a free connection (send lag: from the intended send to the actual one; "
               "large when every connection has a request out) and the service time (actual "
               "send to response), beside tgring's own histograms over the run (warm-up "
               "included; each figure the upper bound of the bucket that holds the 99th "
               "percentile): the ack (request read to response queued), its wait in the inbox "
               "before the batch left (per update) and the batch's commit (sent to result, per "
               "batch). A p99 made of send lag while the ack's stays short is the open loop "
               "queueing behind its connections when service times stretch, not time spent "
               "in tgring.")
        self.w()
        self.w("| run | generator p99 ms | send lag p99 ms | service p99 ms | tgring ack p99 ms | "
               "wait before send p99 ms | commit p99 ms | batch p50 / p99 |")
        self.w("|---|---|---|---|---|---|---|---|")

        for x in runs:
            ms = [hist_bound(x.get(k), 0.99, 1000) for k in ("tgring_ack", "tgring_queue",
                                                        "tgring_commit")]
            self.w(f"| {x['label']} | {fmt(x['latency_ms']['p99'], 2)} | "
                   f"{fmt((x.get('send_lag_ms') or {}).get('p99'), 2)} | "
                   f"{fmt((x.get('service_ms') or {}).get('p99'), 2)} | "
                   f"{' | '.join(ms)} | {hist_bound(x.get('tgring_batch'), 0.5)} / "
                   f"{hist_bound(x.get('tgring_batch'), 0.99)} |")
        self.w()

    def peers_line(self, names):
        for n in names:
            self.w(f"- peer {n}: {self.r['peers'].get(n, 'skipped: not run')}")
        self.w()

    # ---- sections -----------------------------------------------------------------------

    def head(self):
        r, e = self.r, self.r.get("env", {})
        self.w(f"# tgring bench {os.path.basename(self.out)}" + (" (quick)" if r["quick"] else ""))
        self.w()
        load1 = float(r["load_start"][0])
        if load1 > 0.5:
            self.w(f"**Warning: the 1-minute load average was {load1} at the start (> 0.5): "
                   "other work shared the machine; read every figure below with that in mind.**")
            self.w()
        if r.get("steal_share"):
            self.w(f"**The host took {100 * r['steal_share']:.1f} % of this machine's CPU time "
                   "over the run (steal, /proc/stat)**: every process ran slower by that much on "
                   "average, unevenly from round to round; the per-run share is in the run tables.")
            self.w()
        fp = r.get("fsync_probe", {})
        self.w(f"- commit: `{e.get('git')}`; kernel {e.get('kernel')}; {e.get('cores')} cores, "
               f"{e.get('cpu')}")
        self.w(f"- PostgreSQL {e.get('postgresql')} (non-default settings in environment.txt); "
               f"fsync floor: one 8 kB write + fdatasync p50 {fp.get('p50_us')} µs, p99 "
               f"{fp.get('p99_us')} µs (own probe, {fp.get('n')} in 1 s)"
               + (f"; pg_test_fsync fdatasync {r['fdatasync_us']} µs/op" if r.get("fdatasync_us")
                  else "; pg_test_fsync not run (quick)"))
        wp = r.get("wake_probe")
        if wp:
            self.w(f"- timer wake-up: a {wp['nap_ms']:g} ms sleep overshoots by p50 {wp['p50_us']} µs, "
                   f"p99 {wp['p99_us']} µs, max {wp['max_us']} µs ({wp['n']} sleeps in 1 s): "
                   "a floor under every latency at low rates, where cores idle between requests")
        self.w(f"- tgring in a memory {r.get('cgroup')}; {e.get('pinning')}; its settings from "
               f"the environment: {e.get('tgring_settings', 'defaults')}")
        self.w(f"- generator `{e.get('generator')}`; {r['rounds']} paired round(s) per comparison, "
               f"{r['duration_s']} s windows; load average at the start "
               f"{' '.join(r['load_start'])}, at the end {' '.join(r.get('load_end', ['?']))}")
        if "rows" in r:
            verdict = (("equal" if r["rows"] == r["oks"] else
                        f"every 200 stored, {r['rows'] - r['oks']} more rows from requests answered "
                        f"503 past the ack timeout or given up by the generator")
                       if r["lost_nothing"] else f"**MISMATCH** in {', '.join(r.get('bad_runs', []))}")
            self.w(f"- loss check: rows added to updates {r['rows']}, 200 responses "
                   f"{r['oks']}, 503s {r.get('late503', 0)}, unanswered {r.get('unanswered', 0)}: "
                   f"{verdict}; "
                   f"OOM kills in the cgroup: {r.get('oom_kills')}")
        self.w()

    def ack(self, s):
        self.w("## ack: GET /health/live and the webhook path, closed loop, 50 connections")
        self.w()
        self.peers_line(s["peers"])
        metrics = [("requests/s", lambda x: x["rate"]),
                   ("server CPU µs/request", lambda x: x["window"]["srv_us_per_req"]),
                   ("p99 ms", lambda x: x["latency_ms"]["p99"])]
        if "nodb" in s:
            self.w(f"- nodb (tgring built with -Dbench_nodb=true, the webhook answered after the "
                   f"JSON check without storing): {s.get('nodb') or 'skipped: not run'}")
            self.w()
        for path, runs in s["paths"].items():
            self.w(f"### {path}")
            self.w()
            self.paired_table(runs, metrics)
            if runs.get("nodb"):
                cpu = lambda srv: median_of([x["window"]["srv_us_per_req"]
                                             for x in runs.get(srv, [])])
                nodb, tg, ngx = cpu("nodb"), cpu("tgring"), cpu("nginx")
                self.w(f"- the webhook without the database: {fmt(nodb, 2)} µs of server CPU per "
                       f"request (median; target < 10 µs: "
                       f"{'met' if nodb is not None and nodb < 10 else 'NOT MET'})"
                       + (f"; storing it durably costs tgring {fmt(tg - nodb, 2)} µs more"
                          if tg is not None and nodb is not None else "")
                       + (f"; nginx answering the same POST: {fmt(ngx, 2)} µs" if ngx else ""))
                self.w()
            self.run_table([x for rs in runs.values() for x in rs])
        self.spectrum_plot("ack", [(f"{srv} {path}", rs[-1]) for path, runs in s["paths"].items()
                                   for srv, rs in runs.items() if rs])

    def ingest(self, s):
        self.w("## ingest: durable webhook ingestion, a rate sweep")
        self.w()
        self.peers_line(s["peers"])
        for conns, cap in s["capacity"].items():
            self.w(f"### closed-loop capacity, {conns} connections")
            self.w()
            self.paired_table(cap["runs"], [
                ("updates/s", lambda x: x["rate"]),
                ("server CPU µs/update", lambda x: x["window"]["srv_us_per_req"]),
                ("PostgreSQL CPU µs/update", lambda x: x["window"]["pg_us_per_req"])])
        if s.get("pgbench"):
            tg = [x["rate"] for x in s["capacity"].get("100", {}).get("runs", {}).get("tgring", [])]
            rs = ratio_summary(tg[:len(s["pgbench"])], s["pgbench"])
            self.w(f"pgbench peer (12 clients × pipelines of 8 inserts): rows/s per round "
                   f"{', '.join(fmt(v, 0) for v in s['pgbench'])}; tgring closed loop 100 "
                   f"connections / pgbench: "
                   + (f"{rs['median']:.3f} ({rs['lo']:.3f}–{rs['hi']:.3f}, {rs['n']} rounds)"
                      if rs else "—")
                   + (" (its rounds interleaved with the servers', in the table above)"
                      if s.get("pgbench_interleaved") else " (not interleaved with tgring's rounds)"))
            self.w()
        half = s.get("half")
        if half:
            self.w(f"### the ack's tail at half the capacity ({fmt(half['rate'], 0)}/s), against "
                   "pgbench at the same row rate")
            self.w()
            self.w("tgring open loop, 100 connections, latency from each request's intended send; "
                   "pgbench (12 clients × pipelines of 8 inserts) open loop with `--rate` at the "
                   "same rows/s, latency from each transaction's scheduled start (its 8 rows "
                   "commit together); paired rounds in random order.")
            self.w()
            self.paired_table(half["runs"], [
                ("p99 ms", lambda x: x["latency_ms"]["p99"]),
                ("p50 ms", lambda x: x["latency_ms"]["p50"]),
                ("p99.9 ms", lambda x: x["latency_ms"].get("p99.9")),
                ("rows/s achieved", lambda x: x["rate"]),
                ("PostgreSQL CPU µs/update", lambda x: x["window"]["pg_us_per_req"])])
            tg = median_of([x["latency_ms"]["p99"] for x in half["runs"].get("tgring", [])])
            pg = median_of([x["latency_ms"]["p99"] for x in half["runs"].get("pgbench", [])])
            if tg is not None:
                self.w(f"- p99 at half the capacity: tgring {fmt(tg, 2)} ms"
                       + (f", pgbench {fmt(pg, 2)} ms (medians of the rounds)" if pg is not None
                          else ", pgbench not run")
                       + f"; target ≤ pgbench's and < {half['p99_target_ms']:g} ms: "
                       + ("met" if tg < half["p99_target_ms"] and pg is not None and tg <= pg
                          else "NOT MET"))
                self.w()
            self.run_table([x for rs in half["runs"].values() for x in rs])
            self.stage_table(half["runs"].get("tgring", []))
        self.w("Highest rate with p99 < 5 ms and no errors or non-2xx answers:")
        self.w()
        for srv, by in s["sustainable"].items():
            self.w(f"- {srv}: " + ", ".join(f"{c} connections: {fmt(v, 0) if v else 'none'}"
                                            for c, v in by.items()))
        self.w()
        allruns = []
        plots = []
        for conns, sweep in s["sweep"].items():
            for srv, runs in sweep.items():
                allruns += runs
                dat = os.path.join(self.raw, f"sweep-{srv}-c{conns}.dat")
                with open(dat, "w") as f:
                    f.write("# intended/s achieved/s p99_ms\n")
                    f.writelines(f"{x['intended_rate']} {x['rate']} {max(x['latency_ms']['p99'], 0.001)}\n"
                                 for x in runs)
                plots.append(f"'{dat}' using 2:3 with linespoints title '{srv}, {conns} conns'")
        if not allruns:
            self.w("_No rate sweep in this run (BENCH_INGEST_SWEEP=0): the capacities only._")
            self.w()
        else:
            self.run_table(allruns)
            self.w("Throughput against p99 across the sweep:")
            self.w()
            self.gnuplot("ingest-p99.png", f"""
set title 'ingest: achieved rate vs p99'
set logscale xy
set xlabel 'updates/s achieved'
set ylabel 'p99 (ms)'
set grid
set key top left
set arrow from graph 0, first 5 to graph 1, first 5 nohead dashtype 2
plot {', '.join(plots)}
""")
        sus = s["sustainable"].get("tgring", {}).get("100")
        pick = [(f"{x['server']} {fmt(x['intended_rate'], 0)}/s", x) for x in
                s["sweep"].get("100", {}).get("tgring", []) + [y for srv, rs in
                s["sweep"].get("100", {}).items() if srv != "tgring" for y in rs]
                if x["intended_rate"] == sus]
        if not pick:
            pick = [("tgring closed loop", x) for x in
                    s["capacity"].get("100", {}).get("runs", {}).get("tgring", [])[-1:]]
        self.spectrum_plot("ingest", pick)

    def overload(self, s):
        base_is = s.get("base_is", "the sustainable rate")
        self.w(f"## overload: 150 % and 200 % of {base_is} ({fmt(s.get('base', s['sustainable']), 0)}/s),"
               f" then PostgreSQL stopped (SIGSTOP) for {s['freeze_s']} s at "
               f"{fmt(s['sustainable'], 0)}/s")
        self.w()
        self.w("| run | offered/s | goodput (200s/s) | share of 503s | p99 ms | max ms |")
        self.w("|---|---|---|---|---|---|")
        for name, x in s["runs"].items():
            self.w(f"| {name} | {fmt(x['intended_rate'], 0)} | {fmt(x['goodput'], 0)} | "
                   f"{x['share_503']} | {x['latency_ms']['p99']} | {x['latency_ms']['max']} |")
        self.w()
        peak = s.get("peak_bytes")
        t = s.get("ack_timeout_ms")
        if t is not None:
            v = s.get("ack_within_timeout")
            self.w(f"- no request waits past TGRING_ACK_TIMEOUT_MS ({t} ms): "
                   + ("**met**" if v else "**NOT MET**" if v is not None else "not measured")
                   + f" — the longest response time from the request's actual send, over every "
                   f"run above: {fmt(s.get('service_max_ms'))} ms (the generator's own queue "
                   "behind busy connections, which the p99 and max columns include, left out)")
            for name, x in s["runs"].items():
                h = dict(x.get("tgring_ack") or [])
                if not h:
                    continue
                total = h.get("+Inf", 0)
                bounds = sorted((float(le), n) for le, n in h.items() if le != "+Inf")
                within = max((n for le, n in bounds if le * 1000 <= t), default=0)
                above = [(le, n) for le, n in bounds if le * 1000 > t]
                nxt = above[0] if above else None
                self.w(f"  - {name}, tgring's own ack times (tgring_ack_latency_seconds, the "
                       f"whole run): {fmt(int(total))} acks, {fmt(int(within))} within {t / 1000:g} s"
                       + (f", {fmt(int(nxt[1] - within))} in ({t / 1000:g} s, {nxt[0]:g} s] "
                          f"(503s at the timeout), {fmt(int(total - nxt[1]))} above {nxt[0]:g} s"
                          if nxt else ""))
        self.w(f"- time to recover after SIGCONT (no 503s, 200s at ≥ 90 % of the rate in a 0.25 s "
               f"sample): {s['recover_s'] if s['recover_s'] is not None else 'not within the run'} s")
        self.w(f"- memory: cgroup peak {fmt(peak / 2**20) if peak else '—'} MiB, RssAnon max "
               f"{fmt(s['max_rss_anon_kb'] / 1024) if s['max_rss_anon_kb'] else '—'} MiB; "
               f"OOM kills {s['oom_kills']}")
        self.w()
        self.run_table(list(s["runs"].values()))
        samples = os.path.join(self.raw, "overload.samples")
        if os.path.exists(samples):
            self.w("Timeline (responses per second by status from tgring's /metrics, resident "
                   "anonymous memory; sampled every 0.25 s):")
            self.w()
            marks = [l.split(None, 3)[2:] for l in open(samples) if l.startswith("# mark")]
            arrows = "".join(f"set arrow from {t}, graph 0 to {t}, graph 1 nohead dashtype 3\n"
                             f"set label '{m.strip()}' at {t}, graph 0.97 rotate by 90 right\n"
                             for t, m in marks)
            self.gnuplot("overload-timeline.png", f"""
set title 'overload timeline'
set xlabel 's'
set ylabel 'responses/s'
set y2label 'RssAnon (MiB)'
set y2tics
set ytics nomirror
set yrange [0:*]
set y2range [0:*]
set grid
set key top right
{arrows}
plot '{samples}' using 1:4 with lines title '200s/s', '' using 1:5 with lines title '503s/s', \
     '' using 1:($2/1024) axes x1y2 with lines title 'RssAnon MiB'
""")
        else:
            self.missing.append("overload.samples")
            self.w("_No overload timeline: raw/overload.samples is missing._")
        self.spectrum_plot("overload", [(k, x) for k, x in s["runs"].items()])

    def connections(self, s):
        self.w(f"## connections: {s['idle']:,} idle keep-alive connections plus "
               f"{fmt(s['rate'], 0)}/s over 40 connections")
        self.w()
        ic = s.get("idleconns") or {}
        held = ic.get("held_kb", {})
        self.w(f"- idle connections open and held: {ic.get('open_held', '—')} of {s['idle']:,} "
               f"(client {'ok' if s['idle_ok'] else 'FAILED'}); tgring VmRSS with them "
               f"{fmt(held.get('VmRSS', 0) / 1024)} MiB, before {fmt(ic.get('before_kb', {}).get('VmRSS', 0) / 1024)} MiB; "
               f"cgroup peak {fmt((s['peak_bytes'] or 0) / 2**20)} MiB")
        self.w()
        self.run_table([s["without"], s["with"]])
        self.spectrum_plot("connections", [("without idle connections", s["without"]),
                                           (f"with {s['idle']} idle", s["with"])])

    def soak(self, s):
        self.w(f"## soak: {fmt(s['rate'], 0)}/s for {s['run']['duration_s']:.0f} s")
        self.w()
        self.w(f"- RssAnon first {s['rss_first_kb']} kB, last {s['rss_last_kb']} kB, max "
               f"{s['rss_max_kb']} kB; OOM kills {s['oom_kills']}")
        self.w()
        self.run_table([s["run"]])
        self.spectrum_plot("soak", [("tgring", s["run"])])

    def e2e(self, s):
        self.w("## e2e: bench/run-e2e, short")
        self.w()
        if s["summary"]:
            self.w("```")
            self.w(s["summary"].rstrip())
            self.w("```")
        else:
            self.w(f"_bench/run-e2e failed (exit {s['rc']}); see {s['log']}._")
        self.w()

    def write(self):
        self.head()
        for name, s in self.r["scenarios"].items():
            getattr(self, name)(s)
        if self.missing:
            self.w("## missing")
            self.w()
            self.lines += [f"- {m}" for m in self.missing]
        with open(os.path.join(self.out, "report.md"), "w") as f:
            f.write("\n".join(self.lines) + "\n")
        return self.missing


def hist_quantile(h, q):
    """The upper bound of the bucket holding quantile q of a cumulative [(le, count)]
    (le '+Inf' last), as float ('inf' past the last bound); None when it is empty."""
    h = [(float(le), n) for le, n in h or []]
    if not h or h[-1][1] <= 0:
        return None
    want = q * h[-1][1]
    return next(le for le, n in h if n >= want)


def hist_bound(h, q, scale=1):
    """The bucket bound holding quantile q of a cumulative histogram h, times scale, as text:
    '≤ 5', '> last bound' past the last, '—' for an empty or missing one."""
    v = hist_quantile(h, q)
    return "—" if v is None else ("> last bound" if v == float("inf") else f"≤ {v * scale:g}")


def median_of(xs):
    xs = [x for x in xs if x is not None]
    return median(xs) if xs else None


def write(out):
    """Writes out/report.md and the plots; returns what is missing."""
    return Report(out).write()


if __name__ == "__main__":
    missing = write(sys.argv[1])
    if missing:
        print("missing: " + ", ".join(missing), file=sys.stderr)
        sys.exit(1)
