# SPDX-License-Identifier: MIT
"""Rejections: wrong or missing secret, malformed JSON, missing update_id,
oversized body, request smuggling shapes, wrong method and path; pipelining;
health endpoints; configuration errors; an unmigrated database; and that the
secret and the database password never show up in a log line."""

import asyncio
import json
import os
import time

import harness

PATH = "/webhook/telegram"
MAX_BODY = 4096
PASSWORD = "pw-Kx7Qe2-never-logged"
HEADER_TIMEOUT_MS = 1000
IDLE_TIMEOUT_MS = 2000


def upd(uid, text="hi"):
    return harness.make_update(uid, "message", chat_id=1000 + uid % 1000, from_id=77,
                               text=text)[0]


async def main(h):
    t = h.t
    pg = h.postgres(password=PASSWORD)
    h.migrate(pg.url())
    secret = "Sec_ret-" + harness.random_secret(40)
    env = h.serve_env(pg, secret, TGRING_MAX_BODY=MAX_BODY, LOG_LEVEL="debug",
                      TGRING_HEADER_TIMEOUT_MS=HEADER_TIMEOUT_MS,
                      TGRING_IDLE_TIMEOUT_MS=IDLE_TIMEOUT_MS)
    env["DATABASE_URL"] = pg.url(password=PASSWORD)
    srv = h.tgring(env)
    t.ok(srv.wait_ready(30), "/health/ready becomes 200")
    port = srv.port
    hdr = {"X-Telegram-Bot-Api-Secret-Token": secret, "Content-Type": "application/json"}

    def count(where="true"):
        return int(pg.scalar(f"SELECT count(*) FROM updates WHERE {where}"))

    async def one(method, path, body=b"", headers=None, raw=None):
        """One request on a fresh connection: (response or None, conn)."""
        c = await harness.HttpConn.open(port)
        try:
            if raw is not None:
                await c.send(raw)
                return await c.read_response(10), c
            return await c.request(method, path, body, headers, timeout=10), c
        except harness.ConnectionClosed as e:
            t.diag(f"{method} {path}: connection closed without a response: {e}")
            return None, c

    def status(resp):
        return resp.status if resp is not None else None

    # The happy path first, so that the rejections below are not just a dead server.
    r, c = await one("POST", PATH, upd(1), hdr)
    c.close()
    t.eq(status(r), 200, "a valid update gets 200")
    t.eq(count(), 1, "and is stored")

    r, c = await one("POST", PATH, upd(2), dict(hdr, **{
        "X-Telegram-Bot-Api-Secret-Token": secret[:-1] + ("x" if secret[-1] != "x" else "y")}))
    c.close()
    t.eq(status(r), 401, "wrong secret: 401")
    r, c = await one("POST", PATH, upd(3), {"Content-Type": "application/json"})
    c.close()
    t.eq(status(r), 401, "missing secret: 401")
    r, c = await one("POST", PATH, upd(4), dict(hdr, **{
        "X-Telegram-Bot-Api-Secret-Token": secret + "A"}))
    c.close()
    t.eq(status(r), 401, "secret with a suffix: 401")
    t.eq(count("update_id IN (2, 3, 4)"), 0, "nothing stored for a 401")

    for desc, body in [
        ("malformed JSON", b'{"update_id":5,"message":{"text":"unterminated}'),
        ("trailing garbage after the JSON", b'{"update_id":6} x'),
        ("JSON without update_id", b'{"message":{"message_id":1,"chat":{"id":1}}}'),
        ("update_id of 2^53", b'{"update_id":9007199254740992,"message":{}}'),
        ("update_id that is a string", b'{"update_id":"7","message":{}}'),
        ("update_id that is negative", b'{"update_id":-8,"message":{}}'),
        ("update_id that is not an integer", b'{"update_id":9.5,"message":{}}'),
        ("a JSON array", b'[{"update_id":10}]'),
        ("invalid UTF-8", b'{"update_id":11,"message":{"text":"\xff\xfe"}}'),
        ("empty body", b""),
    ]:
        r, c = await one("POST", PATH, body, hdr)
        c.close()
        t.eq(status(r), 400, f"{desc}: 400")
    t.eq(count("update_id BETWEEN 5 AND 11"), 0, "nothing stored for a 400")

    # A body of exactly TGRING_MAX_BODY bytes is fine; one byte more is not.
    body = upd(12)
    body = body[:-1] + b" " * (MAX_BODY - len(body)) + b"}"
    r, c = await one("POST", PATH, body, hdr)
    c.close()
    t.eq(status(r), 200, f"a body of exactly TGRING_MAX_BODY ({MAX_BODY}) bytes: 200")
    # Only the head is sent: a server that reads the Content-Length must
    # refuse without waiting for the body.
    c = await harness.HttpConn.open(port)
    head = harness.build_request("POST", PATH, b"", dict(hdr, **{
        "Content-Length": str(MAX_BODY + 1)}))
    await c.send(head)
    try:
        r = await c.read_response(10)
    except harness.ConnectionClosed as e:
        r = None
        t.diag(f"413 case: {e}")
    t.eq(status(r), 413, "a Content-Length of TGRING_MAX_BODY+1: 413")
    t.ok(await c.wait_closed(5), "and the connection is closed after the 413")
    c.close()

    r, c = await one("GET", PATH)
    c.close()
    t.eq(status(r), 405, "GET on the webhook path: 405")
    allow = (r.header("allow") or "") if r else ""
    t.ok("POST" in allow.upper(), "the 405 has an Allow header with POST", f"Allow: {allow!r}")
    r, c = await one("POST", "/webhook/other", upd(13), hdr)
    c.close()
    t.eq(status(r), 404, "unknown path: 404")
    r, c = await one("GET", "/nope")
    c.close()
    t.eq(status(r), 404, "GET on an unknown path: 404")
    r, c = await one("POST", "/health/live", b"{}", hdr)
    c.close()
    t.eq(status(r), 405, "POST on /health/live: 405")
    # Methods are case-sensitive (RFC 9110 9.1): "post" is an unknown method, not POST.
    for m in ("post", "Post"):
        r, c = await one(m, PATH, upd(21), hdr)
        c.close()
        t.eq(status(r), 405, f"{m!r} on the webhook path with a valid update: 405")
    r, c = await one("get", "/health/live")
    c.close()
    t.eq(status(r), 405, "'get' on /health/live: 405")
    t.eq(count("update_id = 21"), 0, "nothing stored for a lower-case method")

    body = upd(14)
    raw = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Telegram-Bot-Api-Secret-Token: {secret}\r\n"
           f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    raw += b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    r, c = await one(None, None, raw=raw)
    t.eq(status(r), 400, "Content-Length together with Transfer-Encoding: 400")
    t.ok(c.closed or await c.wait_closed(5), "and the connection is closed")
    c.close()
    raw = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Telegram-Bot-Api-Secret-Token: {secret}\r\n"
           f"Content-Length: 3\r\nContent-Length: 4\r\n\r\n{{}}xx").encode()
    r, c = await one(None, None, raw=raw)
    t.eq(status(r), 400, "two different Content-Length headers: 400")
    t.ok(c.closed or await c.wait_closed(5), "and the connection is closed")
    c.close()
    r, c = await one(None, None, raw=b"GARBAGE\r\n\r\n")
    t.eq(status(r), 400, "a malformed request line: 400")
    c.close()
    t.eq(count("update_id = 14"), 0, "nothing stored from a refused request")

    # Pipelining: three requests in one write, answered in order.
    reqs = (harness.build_request("POST", PATH, upd(15), hdr)
            + harness.build_request("GET", "/health/live")
            + harness.build_request("POST", PATH, upd(16), dict(hdr, **{
                "X-Telegram-Bot-Api-Secret-Token": "wrong"})))
    c = await harness.HttpConn.open(port)
    await c.send(reqs)
    got = []
    try:
        for _ in range(3):
            got.append((await c.read_response(10)).status)
    except Exception as e:
        t.diag(f"pipelining: {e!r}")
    t.eq(got, [200, 200, 401], "three pipelined requests are answered in order")
    r = await c.request("POST", PATH, upd(17), hdr)
    t.eq(r.status, 200, "the connection is still usable afterwards")
    c.close()
    t.eq(count("update_id IN (15, 16, 17)"), 2, "the pipelined valid updates are stored")

    # Telegram never chunks, but a chunked body is valid HTTP/1.1: stored decoded.
    body = upd(18)
    raw = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Telegram-Bot-Api-Secret-Token: {secret}\r\n"
           f"Transfer-Encoding: chunked\r\n\r\n").encode()
    raw += b"%x\r\n" % 10 + body[:10] + b"\r\n" + b"%x\r\n" % (len(body) - 10) + body[10:]
    raw += b"\r\n0\r\n\r\n"
    r, c = await one(None, None, raw=raw)
    c.close()
    t.eq(status(r), 200, "a chunked body: 200")
    t.eq(pg.scalar("SELECT encode(body, 'hex') FROM updates WHERE update_id = 18"), body.hex(),
         "and the decoded body is stored")

    # Expect: 100-continue, the head first and the body after the interim answer.
    body = upd(19)
    c = await harness.HttpConn.open(port)
    await c.send(harness.build_request("POST", PATH, b"", dict(hdr, **{
        "Content-Length": str(len(body)), "Expect": "100-continue"})))
    interim = await asyncio.wait_for(c.reader.readuntil(b"\r\n\r\n"), 5)
    t.ok(interim.startswith(b"HTTP/1.1 100"), "Expect: 100-continue gets 100 Continue",
         f"{interim!r}")
    await c.send(body)
    r = await c.read_response(10)
    c.close()
    t.eq(r.status, 200, "and then 200 for the body")

    # HTTP/1.0 without keep-alive: one answer, then the server closes.
    body = upd(20)
    raw = (f"POST {PATH} HTTP/1.0\r\nX-Telegram-Bot-Api-Secret-Token: {secret}\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    r, c = await one(None, None, raw=raw)
    t.eq(status(r), 200, "HTTP/1.0 POST: 200")
    t.ok(c.closed or await c.wait_closed(5), "and the connection is closed after it")
    c.close()

    # A head that never completes is cut off after TGRING_HEADER_TIMEOUT_MS.
    c = await harness.HttpConn.open(port)
    await c.send(f"POST {PATH} HTTP/1.1\r\nHost: x\r\n".encode())
    t0 = time.monotonic()
    closed, data = await c.read_to_eof(HEADER_TIMEOUT_MS / 1000 + 3)
    took = time.monotonic() - t0
    t.ok(closed and took >= HEADER_TIMEOUT_MS / 1000 - 0.2,
         "an incomplete head is closed after the header timeout",
         f"closed {closed} after {took:.2f} s; received {data[:100]!r}")
    t.ok(data == b"" or data.startswith(b"HTTP/1.1 408"), "with a 408 or nothing", f"{data!r}")
    c.close()
    # An idle keep-alive connection is closed after TGRING_IDLE_TIMEOUT_MS.
    c = await harness.HttpConn.open(port)
    r = await c.request("GET", "/health/live")
    t0 = time.monotonic()
    closed, data = await c.read_to_eof(IDLE_TIMEOUT_MS / 1000 + 3)
    took = time.monotonic() - t0
    t.ok(closed and data == b"" and took >= IDLE_TIMEOUT_MS / 1000 - 0.2,
         "an idle keep-alive connection is closed after the idle timeout, silently",
         f"closed {closed} after {took:.2f} s; received {data[:100]!r}")
    c.close()

    st, _, body = harness.http_get(port, "/health/live")
    t.eq(st, 200, "/health/live: 200")
    st, _, body = harness.http_get(port, "/health/ready")
    t.eq(st, 200, "/health/ready: 200")
    st, hd, body = harness.http_get(port, "/metrics")
    t.eq(st, 200, "/metrics: 200")
    t.ok(secret not in body.decode("utf-8", "replace"), "the secret is not in /metrics")
    m = harness.parse_metrics(body.decode())
    for code in ("401", "400", "404", "405", "413"):
        v = harness.metric(m, "tgring_http_requests_total", code=code)
        t.ok(v is not None and v >= 1, f"tgring_http_requests_total counts {code}", f"{v}")

    rc = srv.stop()
    t.eq(rc, 0, "tgring exits 0 on SIGTERM")
    log = srv.log()
    t.ok(secret not in log, "the webhook secret is not in tgring's log")
    t.ok(PASSWORD not in log, "the database password is not in tgring's log")
    lines = [ln for ln in log.splitlines() if ln.strip()]
    bad = []
    for ln in lines:
        try:
            obj = json.loads(ln)
            if not isinstance(obj, dict) or not {"ts", "level", "pid", "event", "msg"} <= set(obj):
                bad.append(ln)
        except ValueError:
            bad.append(ln)
    t.ok(lines and not bad, "every log line is a JSON object with ts, level, pid, event, msg",
         f"{len(bad)} of {len(lines)} lines are not: {bad[:3]}")

    # ---- configuration errors: no server needed
    base = {"TELEGRAM_WEBHOOK_SECRET": secret}
    rc, out, err = h.run(["serve"], dict(base, TGRING_WORKERS="abc"), timeout=30)
    cfg = [ln for ln in err.splitlines() if ln.startswith("tgring: config:")]
    t.ok(rc not in (0, None), "serve without DATABASE_URL and with TGRING_WORKERS=abc fails",
         f"exit {rc}")
    t.eq(len(cfg), 2, "one 'tgring: config:' line per problem", err)
    t.ok(any("DATABASE_URL" in ln for ln in cfg), "a line names DATABASE_URL", err)
    t.ok(any("TGRING_WORKERS" in ln for ln in cfg), "a line names TGRING_WORKERS", err)
    t.ok(secret not in err + out, "the secret is not echoed")

    bad_secret = "has space and $ign"
    rc, out, err = h.run(["serve"], {"TELEGRAM_WEBHOOK_SECRET": bad_secret,
                                     "DATABASE_URL": pg.url(password=PASSWORD)}, timeout=30)
    cfg = [ln for ln in err.splitlines() if ln.startswith("tgring: config:")]
    t.ok(rc not in (0, None) and any("TELEGRAM_WEBHOOK_SECRET" in ln for ln in cfg),
         "an invalid secret is a config error naming TELEGRAM_WEBHOOK_SECRET", f"{rc}: {err}")
    t.ok(bad_secret not in err + out, "and its value is not echoed")

    rc, out, err = h.run(["serve"], {"DATABASE_URL": pg.url()}, timeout=30)
    cfg = [ln for ln in err.splitlines() if ln.startswith("tgring: config:")]
    t.ok(rc not in (0, None) and any("TELEGRAM_WEBHOOK_SECRET" in ln for ln in cfg),
         "serve without TELEGRAM_WEBHOOK_SECRET is a config error", f"{rc}: {err}")

    for var, val in [("TGRING_LISTEN", "nonsense"), ("TGRING_MAX_BODY", "-1"),
                     ("LOG_LEVEL", "loud"), ("LOG_FORMAT", "xml"),
                     ("TGRING_ACK_TIMEOUT_MS", "soon")]:
        rc, out, err = h.run(["serve"], dict(base, DATABASE_URL=pg.url(), **{var: val}),
                             timeout=30)
        cfg = [ln for ln in err.splitlines() if ln.startswith("tgring: config:")]
        t.ok(rc not in (0, None) and len(cfg) == 1 and var in cfg[0],
             f"{var}={val}: one config error", f"exit {rc}: {err}")

    # DATABASE_URL and DATABASE_URL_FILE together is ambiguous.
    url_file = os.path.join(h.workdir, "dburl")
    with open(url_file, "w") as f:
        f.write(pg.url() + "\n")
    rc, out, err = h.run(["serve"], dict(base, DATABASE_URL=pg.url(), DATABASE_URL_FILE=url_file),
                         timeout=30)
    t.ok(rc not in (0, None) and "tgring: config:" in err,
         "DATABASE_URL with DATABASE_URL_FILE is refused", f"exit {rc}: {err}")

    # An unmigrated database: serve refuses and says what to run.
    pg.createdb("empty")
    rc, out, err = h.run(["serve"], dict(base, DATABASE_URL=pg.url("empty", PASSWORD),
                                         TGRING_LISTEN=f"127.0.0.1:{harness.free_port()}"),
                         timeout=30)
    t.ok(rc not in (0, None), "serve on an unmigrated database exits non-zero", f"exit {rc}")
    t.ok("tgring migrate" in err + out, "and tells to run `tgring migrate`", err)
    t.ok(PASSWORD not in err + out and secret not in err + out,
         "no secret or password in that message")

    # An unreachable database: migrate fails without printing the password.
    dead = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{harness.free_port()}/tgring"
    rc, out, err = h.run(["migrate"], {"DATABASE_URL": dead}, timeout=60)
    t.ok(rc not in (0, None), "migrate against an unreachable database fails", f"exit {rc}")
    t.ok(PASSWORD not in err + out, "and does not print the password", err)


harness.run(main)
