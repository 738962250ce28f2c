#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""tgload against small local servers, one check group per argument (TAP):

  schedule  a server that stalls every answer for 1 s in the middle of a 3 s
            run: the requests intended during the stall carry it
  paused    tgload itself stopped for 0.4 s: the delay is reported as the
            generator's (generator_behind), not the server's
  timeouts  a server that never answers: timeouts and unsent, never valid
  mix       bench/scenarios/webhook-mix.scn: unique ids but the duplicate
            share, Zipf-skewed chats, the type mix, valid JSON bodies
  https     a TLS server with a test CA (tests/unit/tls/mkcerts.sh): requests
            complete over keep-alive with --cafile, a wrong CA fails clearly

Environment: TGLOAD (the binary), TGRING_SRC (the source tree).
"""
import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

TGLOAD = os.environ["TGLOAD"]
SRC = os.environ["TGRING_SRC"]
n_checks = 0
failed = 0


def ok(cond, what):
    global n_checks, failed
    n_checks += 1
    failed += not cond
    print(f"{'ok' if cond else 'not ok'} {n_checks} - {what}", flush=True)


def diag(text):
    for line in str(text).splitlines():
        print(f"# {line}", flush=True)


class Server:
    """HTTP/1.1 keep-alive server in a thread: answers 200 'ok', records bodies and headers.

    mode 'ok' answers at once, 'stall' holds every answer due between 1 s and 2 s after
    the first request until 2 s, 'silent' never answers."""

    def __init__(self, mode="ok", host="127.0.0.1", sslctx=None):
        self.mode, self.sslctx = mode, sslctx
        self.bodies, self.headers = [], []
        self.t0 = None
        fam = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
        self.sock = socket.socket(fam[0], socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(fam[4][:2])
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self):
        self.server = await asyncio.start_server(self._conn, sock=self.sock, ssl=self.sslctx)
        await self.server.serve_forever()

    async def _conn(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                now = time.monotonic()
                if self.t0 is None:
                    self.t0 = now
                lines = head.decode("latin-1").split("\r\n")
                hdrs = {}
                for l in lines[1:]:
                    if ":" in l:
                        k, v = l.split(":", 1)
                        hdrs[k.strip().lower()] = v.strip()
                n = int(hdrs.get("content-length", "0"))
                body = await reader.readexactly(n) if n else b""
                self.headers.append(hdrs)
                self.bodies.append(body)
                if self.mode == "silent":
                    await asyncio.sleep(3600)
                if self.mode == "stall" and self.t0 + 1.0 <= now < self.t0 + 2.0:
                    await asyncio.sleep(self.t0 + 2.0 - now)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            writer.close()


def tgload(*args, expect_json=True):
    p = subprocess.run([TGLOAD, *args], capture_output=True, text=True, timeout=100)
    if p.returncode != 0 or not expect_json:
        return p, None
    last = p.stdout.strip().splitlines()[-1]
    return p, json.loads(last)


def read_hgrm(path):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and not line.startswith("#") and parts[0] != "Value":
                rows.append((float(parts[0]), float(parts[1]), int(parts[2])))
    return rows


def test_schedule(tmp):
    srv = Server("stall")
    rate = 100
    hgrm = os.path.join(tmp, "stall.hgrm")
    p, d = tgload("-R", str(rate), "-c", "20", "-d", "3", "-w", "0", "-t", "10",
                  "--hgrm", hgrm, f"127.0.0.1:{srv.port}")
    ok(p.returncode == 0 and d is not None, "tgload ran against the stalling server")
    if d is None:
        diag(p.stderr)
        return
    ok(d["accounted"] == rate * 3 and d["recorded"] == rate * 3,
       f"every request answered and accounted for ({d['accounted']})")
    ok(d["latency_ms"]["max"] >= 900, f"max {d['latency_ms']['max']} ms carries the 1 s stall")
    rows = read_hgrm(hgrm)
    total = rows[-1][2]
    below = max([n for v, _, n in rows if v < 500] or [0])
    slow = total - below
    # Requests intended in the stall's first half wait >= 500 ms: rate * 0.5 of them.
    want = rate * 0.5
    ok(0.6 * want <= slow <= 1.6 * want,
       f"{slow} requests at >= 500 ms in the hgrm, about {want:.0f} intended in the stall's first half")
    ok(d["valid"] is True, "the run is valid (nothing lost)")
    ok(d["target_backlog"] is True and d["max_backlog"] > 0,
       "the backlog during the stall is reported as the target's")
    # Requests due in the stall after its first 0.2 s (20 connections at 100/s all stalled by
    # then) waited up to 0.8 s for a connection (send lag), none of it
    # the generator's (its own lag stays far below; on a busy machine its sleeps may
    # overshoot by some ms, so generator_behind itself is not asserted here).
    ok(d["send_lag_ms"]["max"] >= 600 and d["gen_lag_ms"]["max"] < 300,
       f"the stall is not charged to the generator (send lag max {d['send_lag_ms']['max']} ms, "
       f"gen lag max {d['gen_lag_ms']['max']} ms)")
    ok(d["service_ms"]["max"] >= 900 and d["service_ms"]["p50"] < 100,
       f"service time from the actual send: max {d['service_ms']['max']} ms (the stall), "
       f"p50 {d['service_ms']['p50']} ms")
    ok(os.path.exists(os.path.join(tmp, "stall.2xx.hgrm")), "the 2xx hgrm is written beside it")
    ok(d["latency_2xx_ms"]["count"] == rate * 3, "the 2xx histogram holds every response")
    # The same stall with wrk2's per-connection schedule is charged too.
    srv2 = Server("stall")
    p, d = tgload("-R", str(rate), "-c", "20", "-d", "3", "-w", "0", "--per-conn",
                  f"127.0.0.1:{srv2.port}")
    ok(d is not None and d["latency_ms"]["max"] >= 900 and d["schedule"] == "per-conn",
       "--per-conn: the stall shows in the max")


def test_paused(tmp):
    """tgload itself stopped for 0.4 s against a fast server: the requests due meanwhile go out
    late by its own doing, and the run says so."""
    srv = Server("ok")
    j = os.path.join(tmp, "paused.json")
    p = subprocess.Popen([TGLOAD, "-R", "200", "-c", "10", "-d", "3", "-w", "0", "-j", j,
                          f"127.0.0.1:{srv.port}"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(1.2)
    p.send_signal(signal.SIGSTOP)
    time.sleep(0.4)
    p.send_signal(signal.SIGCONT)
    _, err = p.communicate(timeout=60)
    d = json.load(open(j)) if p.returncode == 0 and os.path.exists(j) else None
    ok(d is not None, "tgload ran through a pause of its own")
    if d is None:
        diag(err)
        return
    ok(d["generator_behind"] is True and d["gen_lag_ms"]["max"] >= 300,
       f"its pause is reported as the generator's (gen lag max {d['gen_lag_ms']['max']} ms)")
    ok(d["service_ms"]["p99"] < 300,
       f"and not as the server's (service p99 {d['service_ms']['p99']} ms)")


def test_timeouts(tmp):
    srv = Server("silent")
    p, d = tgload("-R", "50", "-c", "5", "-d", "2", "-w", "0", "-t", "0.5",
                  f"127.0.0.1:{srv.port}")
    ok(p.returncode == 0 and d is not None, "tgload ran against the silent server")
    if d is None:
        diag(p.stderr)
        return
    ok(d["timeouts"] > 0, f"timeouts reported ({d['timeouts']})")
    ok(d["unsent"] > 0, f"unsent reported ({d['unsent']})")
    ok(d["valid"] is False and "timeouts" in d["invalid_reason"], "the run is marked invalid")
    ok(d["recorded"] == 0 and d["ok_2xx"] == 0, "no response was recorded")
    ok(d["accounted"] == 100 and d["failed_recorded"] + d["unsent_recorded"] == 100,
       f"all 100 intended requests are in the histogram ({d['accounted']})")
    ok(d["latency_ms"]["p50"] >= 500, f"their latency is at least the timeout (p50 {d['latency_ms']['p50']} ms)")
    ok("INVALID" in p.stdout, "the text summary says INVALID")


def test_mix(tmp):
    scn = os.path.join(SRC, "bench", "scenarios", "webhook-mix.scn")
    conf = {"mix": {}, "commands": []}
    for line in open(scn):
        t = line.split("#")[0].split()
        if not t:
            continue
        if t[0] == "mix":
            conf["mix"] = {t[i]: float(t[i + 1]) for i in range(1, len(t), 2)}
        elif t[0] == "commands":
            conf["commands"] = t[1:]
        else:
            conf[t[0]] = float(t[1])
    srv = Server("ok")
    p, d = tgload("-R", "500", "-c", "10", "-d", "4", "-w", "0", "--seed", "7",
                  "--scenario", scn, "--secret", "s3cret", "-P", "/hook",
                  f"127.0.0.1:{srv.port}")
    ok(d is not None and d["ok_2xx"] == 2000, "2000 updates delivered")
    if d is None:
        diag(p.stderr)
        return
    ups = []
    bad = 0
    for b in srv.bodies:
        try:
            ups.append(json.loads(b))
        except ValueError:
            bad += 1
    ok(bad == 0 and len(ups) == 2000, f"every body is JSON ({bad} bad)")
    ok(all(h.get("x-telegram-bot-api-secret-token") == "s3cret" for h in srv.headers),
       "--secret sends the secret token header")
    ok(all(h.get("content-type") == "application/json" for h in srv.headers),
       "bodies are sent as application/json")
    ids = [u["update_id"] for u in ups]
    dup_share = 100.0 * (len(ids) - len(set(ids))) / len(ids)
    ok(abs(dup_share - conf["duplicates"]) <= 1.5,
       f"duplicate ids {dup_share:.2f}% (configured {conf['duplicates']}%)")
    ok(d["duplicates_sent"] == len(ids) - len(set(ids)), "the JSON counts the duplicates")
    kinds = {"message": 0, "command": 0, "callback": 0, "edited": 0}
    chats = {}
    wellformed = True
    for u in ups:
        if "callback_query" in u:
            q = u["callback_query"]
            kinds["callback"] += 1
            chat = q["message"]["chat"]["id"]
            wellformed &= bool(q.get("data")) and q["from"]["id"] == chat
        elif "edited_message" in u:
            kinds["edited"] += 1
            chat = u["edited_message"]["chat"]["id"]
        else:
            m = u["message"]
            chat = m["chat"]["id"]
            if m["text"].startswith("/"):
                kinds["command"] += 1
                wellformed &= m["text"] in conf["commands"]
                wellformed &= m["entities"][0]["type"] == "bot_command"
            else:
                kinds["message"] += 1
        chats[chat] = chats.get(chat, 0) + 1
    ok(wellformed, "callbacks carry data, commands come from the scenario's list")
    total_w = sum(conf["mix"].values())
    for k, w in conf["mix"].items():
        share = 100.0 * kinds[k] / len(ups)
        ok(abs(share - 100.0 * w / total_w) <= 5, f"{k}: {share:.1f}% (configured {100.0 * w / total_w:.1f}%)")
    n, s = int(conf["chats"]), conf["zipf"]
    h = sum(r ** -s for r in range(1, n + 1))
    top = max(chats.values()) / len(ups)
    ok(abs(top - 1 / h) <= 0.04, f"top chat's share {top:.3f} (Zipf expects {1 / h:.3f})")
    ok(len(chats) > 100, f"{len(chats)} distinct chats")


def test_https(tmp):
    if shutil.which("openssl") is None:
        print("1..0 # SKIP openssl not available")
        sys.exit(77)
    r = subprocess.run(["sh", os.path.join(SRC, "tests", "unit", "tls", "mkcerts.sh"), tmp],
                       capture_output=True)
    if r.returncode != 0:
        print("1..0 # SKIP could not make certificates")
        sys.exit(77)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(tmp, "server.pem"), os.path.join(tmp, "server.key"))
    srv = Server("ok", host="localhost", sslctx=ctx)
    url = f"https://localhost:{srv.port}/webhook"
    p, d = tgload("-R", "100", "-c", "4", "-d", "2", "-w", "0", "-u", url,
                  "--cafile", os.path.join(tmp, "ca.pem"), "--secret", "tls-secret")
    ok(d is not None and d["ok_2xx"] == 200 and d["errors"] == 0,
       "200 requests over https with --cafile")
    if d is None:
        diag(p.stdout + p.stderr)
        return
    ok(d["reconnects"] == 0, "keep-alive: no connection was made again")
    ok(len(srv.headers) == 200 and all(h.get("x-telegram-bot-api-secret-token") == "tls-secret"
                                       for h in srv.headers), "the secret arrives over TLS")
    p, d = tgload("-R", "100", "-c", "2", "-d", "1", "-w", "0", "-u", url,
                  "--cafile", os.path.join(tmp, "other-ca.pem"), expect_json=False)
    ok(p.returncode != 0 and "TLS handshake failed" in p.stderr and "NOT_TRUSTED" in p.stderr,
       "a wrong CA fails clearly")
    diag(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "(no stderr)")


def main():
    name = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        {"schedule": test_schedule, "timeouts": test_timeouts, "mix": test_mix,
         "https": test_https, "paused": test_paused}[name](tmp)
    print(f"1..{n_checks}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
