#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""TAP test of the Bot API stand-in (tests/standin/botapi.py) and its
certificates (tests/standin/mkcerts.sh).

Makes the certificates in a temporary directory, starts the stand-in on free
ports and drives it with http.client over TLS, verifying it with the test CA:
the methods tgring uses, a wrong token, keep-alive and connection ids, every
behaviour mode of the control API, the JSONL record, TLS session resumption,
the untrusted, wrong-host and expired certificates, plain HTTP, and a clean
stop on SIGTERM. Usage: test_standin.py STANDIN_DIR
"""

import http.client
import json
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

STANDIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                          os.path.join(os.path.dirname(__file__), "..", "..", "standin"))
TOKEN = "123456:TEST-token-for-the-local-stand-in_0000"

ntest = 0
nfail = 0


def ok(cond, name, detail=None):
    global ntest, nfail
    ntest += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", ntest, name), flush=True)
    if not cond:
        nfail += 1
        if detail is not None:
            for line in str(detail).splitlines():
                print("# " + line, flush=True)
    return cond


class StandIn:
    """One stand-in process on free ports."""

    def __init__(self, tmp, name, *args):
        self.record = os.path.join(tmp, name + ".jsonl")
        self.err = open(os.path.join(tmp, name + ".err"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(STANDIN, "botapi.py"), "--token", TOKEN,
             "--record", self.record] + list(args),
            stdout=subprocess.PIPE, stderr=self.err, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        line = self.proc.stdout.readline() if ready else ""
        parts = line.split()
        if len(parts) != 3 or parts[0] != "ready":
            self.stop()
            raise RuntimeError("stand-in did not start: %r" % line)
        self.port, self.cport = int(parts[1]), int(parts[2])

    def control(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.cport, timeout=10)
        data = None if body is None else json.dumps(body)
        c.request(method, path, body=data,
                  headers={"Content-Type": "application/json"} if data else {})
        r = c.getresponse()
        out = (r.status, json.loads(r.read() or b"null"))
        c.close()
        return out

    def behave(self, b):
        return self.control("POST", "/behave", b)[0] == 200

    def calls(self):
        return self.control("GET", "/calls")[1]

    def stats(self):
        return self.control("GET", "/stats")[1]

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        return self.proc.returncode


def client_ctx(cafile, tls12=False):
    ctx = ssl.create_default_context(cafile=cafile)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def api(conn, method, body=None, token=TOKEN, form=False, http_method="POST"):
    """Calls a method on an open connection: (status, headers, JSON or raw bytes)."""
    headers = {}
    data = None
    if body is not None:
        if form:
            import urllib.parse
            data = urllib.parse.urlencode(body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
    conn.request(http_method if body is not None else "GET", "/bot%s/%s" % (token, method),
                 body=data, headers=headers)
    r = conn.getresponse()
    raw = r.read()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw
    return r.status, r, parsed


def run(tmp):
    certs = os.path.join(tmp, "certs")
    rc = subprocess.run(["sh", os.path.join(STANDIN, "mkcerts.sh"), certs],
                        capture_output=True, text=True)
    want = ["ca.pem", "ca.key", "server.pem", "server.key", "other-ca.pem", "other-ca.key",
            "server-other.pem", "server-other.key", "wrong-host.pem", "wrong-host.key",
            "expired.pem", "expired.key"]
    missing = [f for f in want if not os.path.isfile(os.path.join(certs, f))]
    ok(rc.returncode == 0 and not missing, "mkcerts.sh makes every file", rc.stderr + str(missing))
    ca = os.path.join(certs, "ca.pem")

    def verify(name):
        return subprocess.run(["openssl", "verify", "-CAfile", ca, os.path.join(certs, name)],
                              capture_output=True).returncode == 0
    ok(verify("server.pem") and verify("wrong-host.pem"), "server and wrong-host chain to the CA")
    ok(not verify("server-other.pem") and not verify("expired.pem"),
       "server-other (other CA) and expired do not verify")

    s = StandIn(tmp, "tls", "--cert", os.path.join(certs, "server.pem"),
                "--key", os.path.join(certs, "server.key"))
    try:
        run_tls(s, tmp, certs, ca)
    finally:
        s.stop()
    run_bad_certs(tmp, certs, ca)
    run_plain(tmp)


def run_tls(s, tmp, certs, ca):
    ok(s.port > 0 and s.cport > 0 and s.port != s.cport, "ready line gives two ports")
    ctx = client_ctx(ca)
    t_start = time.time()

    c = http.client.HTTPSConnection("127.0.0.1", s.port, context=ctx, timeout=10)
    st, r, body = api(c, "getMe")
    ok(st == 200 and body["ok"] and body["result"]["username"] == "quit_smoking_test_bot" and
       body["result"]["id"] == 123456 and body["result"]["is_bot"] is True,
       "getMe over TLS, verified by IP 127.0.0.1", body)
    ok(r.getheader("Content-Type") == "application/json" and r.version == 11,
       "HTTP/1.1 with a JSON content type")

    st, _, body = api(c, "sendMessage", {"chat_id": 5, "text": "hello \u00e9 \U0001F6AD"})
    res = body.get("result", {}) if isinstance(body, dict) else {}
    ok(st == 200 and res.get("chat", {}).get("id") == 5 and
       res.get("chat", {}).get("type") == "private" and
       res.get("text") == "hello \u00e9 \U0001F6AD" and res.get("message_id") == 1 and
       res.get("from", {}).get("is_bot") is True and isinstance(res.get("date"), int),
       "sendMessage echoes chat and text in a Message", body)
    st, _, body = api(c, "sendMessage", {"chat_id": 5, "text": "again",
                                         "reply_markup": {"inline_keyboard": []}})
    ok(st == 200 and body["result"]["message_id"] == 2 and
       body["result"]["reply_markup"] == {"inline_keyboard": []},
       "message ids count up per chat; reply_markup echoed")
    st, _, body = api(c, "sendMessage", {"chat_id": "-5", "text": "form"}, form=True)
    ok(st == 200 and body["result"]["chat"]["id"] == -5 and
       body["result"]["chat"]["type"] == "group" and body["result"]["text"] == "form",
       "form-encoded sendMessage to a group", body)
    st, _, body = api(c, "sendMessage", {"chat_id": -1001234567890, "text": "x"})
    ok(st == 200 and body["result"]["chat"]["type"] == "supergroup", "-100... is a supergroup")
    st, _, body = api(c, "sendMessage", {"chat_id": 5})
    ok(st == 400 and body == {"ok": False, "error_code": 400,
                              "description": "Bad Request: message text is empty"},
       "sendMessage without text: 400", body)
    st, _, body = api(c, "sendMessage", {"chat_id": 5, "text": "x" * 4097})
    ok(st == 400 and body["description"] == "Bad Request: message is too long",
       "a text over 4096 characters: 400")
    st, _, body = api(c, "sendChatAction", {"chat_id": 5, "action": "typing"})
    ok(st == 200 and body == {"ok": True, "result": True}, "another method: ok, true")
    st, _, body = api(c, "getMe", token="123456:wrong")
    ok(st == 401 and body == {"ok": False, "error_code": 401, "description": "Unauthorized"},
       "a wrong token: 401 Unauthorized", body)
    c.request("GET", "/nothing")
    r = c.getresponse()
    ok(r.status == 404 and json.loads(r.read())["error_code"] == 404, "another path: 404")

    # Webhook methods.
    st, _, body = api(c, "setWebhook", {"url": "https://example.com/webhook/telegram",
                                        "secret_token": "s3cr3t", "max_connections": 100,
                                        "allowed_updates": ["message"]})
    ok(st == 200 and body == {"ok": True, "result": True, "description": "Webhook was set"},
       "setWebhook", body)
    st, _, body = api(c, "setWebhook", {"url": "http://example.com/"})
    ok(st == 400 and "HTTPS URL" in body["description"], "setWebhook with http://: 400")
    s.control("POST", "/webhook", {"pending_update_count": 17, "last_error_date": 1700000000,
                                   "last_error_message": "Connection refused"})
    st, _, body = api(c, "getWebhookInfo")
    info = body["result"]
    ok(st == 200 and info["url"] == "https://example.com/webhook/telegram" and
       info["has_custom_certificate"] is False and info["pending_update_count"] == 17 and
       info["max_connections"] == 100 and info["allowed_updates"] == ["message"] and
       info["last_error_message"] == "Connection refused" and
       info["last_error_date"] == 1700000000,
       "getWebhookInfo shows the webhook and the fields set through the control API", info)
    st, _, body = api(c, "deleteWebhook", {"drop_pending_updates": False})
    ok(st == 200 and body["description"] == "Webhook was deleted", "deleteWebhook")
    st, _, body = api(c, "getWebhookInfo")
    ok(body["result"]["url"] == "" and "max_connections" not in body["result"],
       "after deleteWebhook the url is empty", body)
    st, _, body = api(c, "deleteWebhook", {})
    ok(body["description"] == "Webhook is already deleted", "deleteWebhook twice")

    calls = s.calls()
    first_conn = calls[0]["conn"]
    ok(all(x["conn"] == first_conn for x in calls) and
       [x["req_on_conn"] for x in calls] == list(range(1, len(calls) + 1)),
       "one kept-alive connection: one conn id, requests counted on it")
    c.close()

    # ---- behaviours ----
    c = http.client.HTTPSConnection("localhost", s.port, context=ctx, timeout=10)
    ok(s.behave({"mode": "429", "chat_id": 5, "retry_after": 2}), "add a 429 for chat 5")
    st6, _, _ = api(c, "sendMessage", {"chat_id": 6, "text": "a"})
    st, r, body = api(c, "sendMessage", {"chat_id": 5, "text": "b"})
    ok(st6 == 200 and st == 429 and r.getheader("Retry-After") == "2" and
       body == {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 2",
                "parameters": {"retry_after": 2}},
       "429: chat 6 passes, chat 5 gets 429 with retry_after and Retry-After", body)
    st, _, _ = api(c, "sendMessage", {"chat_id": 5, "text": "c"})
    ok(st == 200, "count 1: the next message to chat 5 passes")

    s.behave({"mode": "429_global", "retry_after": 3})
    st, r, body = api(c, "getMe")
    st2, _, _ = api(c, "getMe")
    ok(st == 429 and r.getheader("Retry-After") == "3" and
       body["parameters"]["retry_after"] == 3 and st2 == 200,
       "429_global hits the next call of any kind, once")

    s.behave({"mode": "5xx", "status": 502, "count": 2})
    got = [api(c, "sendMessage", {"chat_id": 9, "text": "x"}) for _ in range(3)]
    ok([g[0] for g in got] == [502, 502, 200] and got[0][2]["error_code"] == 502 and
       got[0][2]["description"] == "Bad Gateway",
       "5xx 502 count 2: two JSON 502s, then 200", [g[0] for g in got])
    s.behave({"mode": "5xx", "status": 503, "html": True})
    st, r, body = api(c, "getMe")
    ok(st == 503 and r.getheader("Content-Type") == "text/html" and
       isinstance(body, bytes) and b"503 Service Unavailable" in body,
       "5xx html: a proxy's HTML page")

    s.behave({"mode": "5xx", "status": 500, "method": "sendmessage"})
    st1, _, _ = api(c, "getMe")
    st2, _, _ = api(c, "sendMessage", {"chat_id": 9, "text": "x"})
    ok(st1 == 200 and st2 == 500, "a behaviour's method filter, in any case")

    s.behave({"mode": "slow", "delay_ms": 1500})
    t0 = time.time()
    st, _, _ = api(c, "sendMessage", {"chat_id": 9, "text": "slow"})
    t1 = time.time()
    rec = s.calls()[-1]
    # Recorded at arrival: the stamp falls between the send and the answer, at
    # least the delay before the answer (lower bounds only; both are this
    # machine's wall clock).
    ok(st == 200 and t1 - t0 >= 1.45 and rec["mode"] == "slow" and
       t0 <= rec["time"] <= t1 - 1.45,
       "slow: answered 1.5 s later, recorded at arrival (%.2f s, stamped %.2f s after the send)"
       % (t1 - t0, rec["time"] - t0))

    s.behave({"mode": "truncate"})
    try:
        api(c, "sendMessage", {"chat_id": 9, "text": "cut"})
        truncated = False
    except (http.client.IncompleteRead, ssl.SSLEOFError):
        truncated = True
    ok(truncated, "truncate: the body ends before Content-Length (TLS EOF without close_notify)")
    c.close()
    c = http.client.HTTPSConnection("localhost", s.port, context=ctx, timeout=10)
    s.behave({"mode": "truncate", "close_notify": True})
    try:
        api(c, "getMe")
        truncated = False
    except http.client.IncompleteRead:
        truncated = True
    ok(truncated, "truncate with close_notify: a clean TLS close, still short")
    c.close()

    c = http.client.HTTPSConnection("localhost", s.port, context=ctx, timeout=10)
    st, _, _ = api(c, "getMe")
    s.behave({"mode": "reset"})
    try:
        api(c, "sendMessage", {"chat_id": 9, "text": "reset"})
        err = None
    except Exception as e:  # noqa: BLE001 - the kind of failure is what is tested
        err = e
    ok(st == 200 and isinstance(err, ConnectionResetError),
       "reset: the kept-alive connection is reset without an answer", repr(err))
    rec = s.calls()[-1]
    ok(rec["mode"] == "reset" and rec["status"] is None and rec["method"] == "sendMessage",
       "the reset call is recorded, with no status")
    c.close()

    c = http.client.HTTPSConnection("localhost", s.port, context=ctx, timeout=10)
    s.behave({"mode": "migrate", "chat_id": -5, "to": -1005, "count": 1})
    st, _, body = api(c, "sendMessage", {"chat_id": -5, "text": "m"})
    st2, _, _ = api(c, "sendMessage", {"chat_id": -5, "text": "m"})
    ok(st == 400 and body["parameters"] == {"migrate_to_chat_id": -1005} and
       body["error_code"] == 400 and "upgraded to a supergroup" in body["description"] and
       st2 == 200, "migrate: 400 with migrate_to_chat_id, count 1", body)
    s.behave({"mode": "migrate", "chat_id": -6, "to": -1006})
    sts = [api(c, "sendMessage", {"chat_id": -6, "text": "m"})[0] for _ in range(3)]
    st, _, _ = api(c, "sendMessage", {"chat_id": -1006, "text": "m"})
    ok(sts == [400, 400, 400] and st == 200, "migrate without count: for good; the new id passes")

    s.behave({"mode": "final", "chat_id": 7, "status": 403,
              "description": "Forbidden: bot was blocked by the user"})
    got = [api(c, "sendMessage", {"chat_id": 7, "text": "f"}) for _ in range(2)]
    ok(all(g[0] == 403 and g[2] == {"ok": False, "error_code": 403,
                                    "description": "Forbidden: bot was blocked by the user"}
           for g in got), "final 403: blocked, and stays so")
    s.behave({"mode": "final", "chat_id": 8, "status": 400, "count": 1})
    st, _, body = api(c, "sendMessage", {"chat_id": 8, "text": "f"})
    ok(st == 400 and body["description"] == "Bad Request: chat not found",
       "final 400 with the default description")

    st, body = s.control("POST", "/behave", {"mode": "nope"})
    ok(st == 400 and body["ok"] is False, "an unknown mode is refused")
    st, body = s.control("POST", "/behave", {"mode": "migrate", "chat_id": 1})
    ok(st == 400, "migrate without \"to\" is refused")
    s.behave([{"mode": "5xx", "count": 5}, {"mode": "slow", "chat_id": 1}])
    left = s.control("GET", "/behave")[1]
    ok(any(b["mode"] == "5xx" and b["count"] == 5 for b in left) and
       any(b["mode"] == "final" for b in left), "GET /behave lists what is left", left)
    s.control("POST", "/behave/clear")
    ok(s.control("GET", "/behave")[1] == [], "POST /behave/clear drops them")
    st, _, _ = api(c, "sendMessage", {"chat_id": 7, "text": "f"})
    ok(st == 200, "chat 7 passes again")
    c.close()

    # ---- concurrency ----
    results = []

    def worker(n):
        cc = http.client.HTTPSConnection("127.0.0.1", s.port, context=ctx, timeout=20)
        for i in range(5):
            results.append(api(cc, "sendMessage", {"chat_id": 1000 + n, "text": str(i)})[0])
        cc.close()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    calls = s.calls()
    conc = [x for x in calls if x["method"] == "sendMessage" and
            isinstance(x["body"], dict) and 1000 <= int(x["body"].get("chat_id", 0)) < 1020]
    conns = {}
    for x in conc:
        conns.setdefault(x["body"]["chat_id"], set()).add(x["conn"])
    ok(results.count(200) == 100 and len(conc) == 100 and len(conns) == 20 and
       all(len(v) == 1 for v in conns.values()) and
       len(set().union(*conns.values())) == 20,
       "20 concurrent keep-alive connections, 5 requests each, a conn id each")

    # ---- the record ----
    with open(s.record) as f:
        lines = [json.loads(line) for line in f]
    ok(len(lines) == len(calls) and lines == calls,
       "the JSONL file holds exactly what GET /calls gives (%d calls)" % len(lines))
    keys = {"seq", "time", "conn", "req_on_conn", "tls", "tls_version", "cipher",
            "session_reused", "http_method", "method", "token_ok", "content_type", "body",
            "body_len", "status", "mode"}
    now = time.time()
    ok(all(set(x) == keys for x in lines) and
       all(t_start - 1 <= x["time"] <= now for x in lines) and
       any(x["time"] != int(x["time"]) for x in lines) and
       [x["seq"] for x in lines] == list(range(1, len(lines) + 1)),
       "every record has all fields, a sub-second time and its sequence number")
    ok(not any(TOKEN in json.dumps(x) or "wrong" in json.dumps(x) for x in lines),
       "no token in the record")
    sm = [x for x in lines if x["method"] == "sendMessage" and x["status"] == 200]
    ok(sm and sm[0]["body"] == {"chat_id": 5, "text": "hello \u00e9 \U0001F6AD"} and
       sm[0]["content_type"] == "application/json" and sm[0]["tls"] is True and
       sm[0]["session_reused"] is False and sm[0]["tls_version"] in ("TLSv1.2", "TLSv1.3"),
       "a sendMessage record: parsed body, TLS details")
    form = [x for x in lines if x["content_type"] == "application/x-www-form-urlencoded"]
    ok(form and form[0]["body"] == {"chat_id": "-5", "text": "form"}, "form fields recorded")
    wrong = [x for x in lines if not x["token_ok"]]
    ok(len(wrong) == 2 and wrong[0]["status"] == 401 and wrong[0]["method"] == "getMe" and
       wrong[1]["status"] == 404 and wrong[1]["method"] is None,
       "the wrong-token call and the other path are marked", wrong)

    # ---- TLS session resumption (TLS 1.2 session IDs, as BearSSL does) ----
    before = s.stats()
    ctx12 = client_ctx(ca, tls12=True)
    ctx12.options |= ssl.OP_NO_TICKET
    c1 = http.client.HTTPSConnection("localhost", s.port, context=ctx12, timeout=10)
    api(c1, "getMe")
    sess = c1.sock.session
    v1 = c1.sock.version()
    c1.close()
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    tls = ctx12.wrap_socket(raw, server_hostname="localhost", session=sess)
    reused = tls.session_reused
    tls.sendall(("GET /bot%s/getMe HTTP/1.1\r\nHost: localhost\r\n\r\n" % TOKEN).encode())
    resp = http.client.HTTPResponse(tls)
    resp.begin()
    resp.read()
    tls.close()
    after = s.stats()
    ok(v1 == "TLSv1.2" and reused, "a TLS 1.2 client resumes its session by ID")
    ok(after["resumed"] == before["resumed"] + 1 and
       after["handshakes"] == before["handshakes"] + 2 and
       after["handshakes_full"] == before["handshakes_full"] + 1,
       "GET /stats counts one full handshake and one resumed", (before, after))
    rec = s.calls()[-1]
    ok(rec["session_reused"] is True and rec["tls_version"] == "TLSv1.2" and
       rec["cipher"].startswith("ECDHE-"), "the record says resumed, TLS 1.2, ECDHE", rec)

    # A client that does not trust the certificate fails its handshake.
    bad = ssl.create_default_context(cafile=os.path.join(certs, "other-ca.pem"))
    try:
        bad.wrap_socket(socket.create_connection(("127.0.0.1", s.port), timeout=10),
                        server_hostname="localhost").close()
        refused = False
    except ssl.SSLCertVerificationError:
        refused = True
    time.sleep(0.3)
    ok(refused and s.stats()["handshake_failures"] == after["handshake_failures"] + 1,
       "a client with another CA fails, and /stats counts the failed handshake")

    st, _ = s.control("POST", "/calls/clear")
    ok(st == 200 and s.calls() == [], "POST /calls/clear empties /calls")
    with open(s.record) as f:
        ok(len(f.readlines()) >= len(lines), "the file keeps every call")

    rc = s.stop()
    ok(rc == 0, "SIGTERM stops it with status 0 (%s)" % rc)


def run_bad_certs(tmp, certs, ca):
    ctx = client_ctx(ca)
    for name, what in (("server-other", "certificate verify failed: unable to get local issuer"),
                       ("wrong-host", "IP address mismatch"),
                       ("expired", "certificate has expired")):
        s = StandIn(tmp, name, "--cert", os.path.join(certs, name + ".pem"),
                    "--key", os.path.join(certs, name + ".key"))
        try:
            c = http.client.HTTPSConnection("127.0.0.1", s.port, context=ctx, timeout=10)
            try:
                api(c, "getMe")
                err = ""
            except ssl.SSLCertVerificationError as e:
                err = str(e)
            ok(what in err, "%s.pem is refused by a client trusting ca.pem" % name, err)
        finally:
            s.stop()


def run_plain(tmp):
    s = StandIn(tmp, "plain", "--plain", "--keep", "3", "--latency-ms", "200")
    try:
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        t0 = time.time()
        st, _, body = api(c, "getMe")
        elapsed = time.time() - t0
        rec = s.calls()[-1]
        ok(st == 200 and body["result"]["username"] == "quit_smoking_test_bot" and
           rec["tls"] is False and rec["session_reused"] is None,
           "--plain serves HTTP, recorded without TLS")
        ok(elapsed >= 0.19, "--latency-ms 200 delays every answer (%.3f s)" % elapsed)
        for _ in range(4):
            api(c, "getMe")
        st = s.stats()
        ok(st["connections"] == 1 and st["handshakes"] == 0, "no handshakes over plain HTTP")
        ok([x["seq"] for x in s.calls()] == [3, 4, 5] and st["calls_dropped"] == 2 and
           st["requests"] == 5, "--keep 3 keeps the last three calls in memory")
        with open(s.record) as f:
            ok(len(f.readlines()) == 5, "and the file all five")
    finally:
        rc = s.stop(signal.SIGINT)
    ok(rc == 0, "SIGINT stops it too")


def main():
    tmp = tempfile.mkdtemp(prefix="tgring-standin-test-")
    try:
        run(tmp)
    except Exception:  # noqa: BLE001 - any failure is reported as a TAP failure
        ok(False, "the test ran to the end", traceback.format_exc())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("1..%d" % ntest)
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
