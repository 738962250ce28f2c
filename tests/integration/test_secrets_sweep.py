# SPDX-License-Identifier: MIT
"""The harness's secrets sweep (harness.Sweep) can fail, and passes when it
should. This test runs itself twice more, as separate test programs, against a
real tgring that logs in to PostgreSQL with a password and reads its token
and secrets as NAME_FILE too:

- planted: after tgring stopped, a line with the webhook secret is added to
  its log, and a stub answers one request with the bot token in a header and
  the percent-encoded database password in the body; a second stub, excluded
  as the Bot API stand-in is, answers with the token too. That run must fail
  with exactly one TAP line per planted leak, each naming the secret's kind
  and where it was, and must print none of the secrets in any form;
- clean: the same without the plants must pass, its sweep line included.

Before that, the parsing of DATABASE_URLs and the masking of diagnostics."""

import asyncio
import json
import os
import re
import subprocess
import sys
import urllib.parse

import botapi_helpers as bh
import harness

ENV_TOKEN, ENV_SECRET, ENV_PASSWORD = "SWEEP_TEST_TOKEN", "SWEEP_TEST_SECRET", "SWEEP_TEST_PASSWORD"


async def stub(answer):
    """A server on a free port that answers each request with `answer` and
    closes. Returns (server, port)."""
    async def serve(reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        finally:
            writer.close()
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def write(h, name, text):
    path = os.path.join(h.workdir, name)
    with open(path, "w") as f:
        f.write(text + "\n")
    return path


async def scenario(h, plant):
    """What both runs do: tgring with every kind of secret, asked for what
    it answers (stored, 401, 404, 400, health, metrics), then stopped."""
    t = h.t
    token, secret, password = (os.environ[v] for v in (ENV_TOKEN, ENV_SECRET, ENV_PASSWORD))
    pg = h.postgres(password=password)
    wrong = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
                            "-d", "tgring", "-c", "SELECT 1"], capture_output=True, timeout=30,
                           env=dict(os.environ, PGPASSWORD="not-" + password))
    t.ok(wrong.returncode != 0, "the cluster refuses a wrong password over TCP")
    url_file = write(h, "database_url", pg.url())
    rc, _, err = h.run(["migrate"], {"DATABASE_URL_FILE": url_file})
    t.eq(rc, 0, "migrate logs in with the password from DATABASE_URL_FILE", err)
    srv = h.tgring({"DATABASE_URL_FILE": url_file,
                    "TELEGRAM_WEBHOOK_SECRET_FILE": write(h, "webhook_secret", secret),
                    "TELEGRAM_BOT_TOKEN": token, "LOG_LEVEL": "debug",
                    # Nothing listens there: getMe and sends fail, and say so.
                    "TELEGRAM_API_URL": f"http://127.0.0.1:{harness.free_port()}"})
    t.ok(srv.wait_ready(30), "tgring is ready")
    c = await harness.HttpConn.open(srv.port)
    body = harness.make_update(1)[0]
    hdr = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret}
    asked = [("POST", "/webhook/telegram", body, hdr, 200),
             ("POST", "/webhook/telegram", body, dict(hdr, **{
                 "X-Telegram-Bot-Api-Secret-Token": secret[::-1]}), 401),
             ("GET", "/nowhere", b"", None, 404),
             ("POST", "/webhook/telegram", b"{" + secret.encode(), hdr, 400)]
    for method, path, data, headers, want in asked:
        if c.closed:
            c = await harness.HttpConn.open(srv.port)
        r = await c.request(method, path, data, headers)
        t.eq(r.status, want, f"{method} {path}: {want}")
    c.close()
    for path in ("/metrics", "/health/ready", "/health/live"):
        t.eq(harness.http_get(srv.port, path)[0], 200, f"GET {path}: 200")
    t.eq(srv.stop(), 0, "tgring stops with exit 0")
    if not plant:
        return
    with open(srv.logfile, "a") as f:
        f.write(json.dumps({"event": "planted", "msg": f"secret {secret}"}) + "\n")
    enc = urllib.parse.quote(password, safe="")
    leaky, port = await stub(f"HTTP/1.1 500 Oops\r\nX-Debug: {token}\r\nContent-Length: "
                             f"{len(enc) + 2}\r\n\r\n[{enc}]".encode())
    fine, fine_port = await stub(f"HTTP/1.1 200 OK\r\nContent-Length: {len(token)}\r\n\r\n"
                                 f"{token}".encode())
    h.sweep.exclude_port(fine_port, "a stand-in")
    try:
        c = await harness.HttpConn.open(port)
        await c.request("GET", "/metrics")
        c.close()
        await asyncio.to_thread(harness.http_get, fine_port, "/calls")
    finally:
        leaky.close()
        fine.close()
    print(f"# planted: leaky port {port}, excluded port {fine_port}", file=sys.stderr)


def check_parsing(t):
    cases = [("postgresql://u:Head1234%40Tail5678@db.invalid:5432/x",
              ["Head1234%40Tail5678", "Head1234@Tail5678"]),
             ("postgresql://u:Head1234/Tail5678@127.0.0.1:1/x", ["Head1234/Tail5678"]),
             ("postgresql://u@127.0.0.1/x?sslmode=disable&password=a%2Fbcdefgh",
              ["a%2Fbcdefgh", "a/bcdefgh"]),
             ("host=127.0.0.1 password='with space\\'quote'", ["with space'quote"]),
             ("postgresql://u@127.0.0.1/x", [])]
    for url, want in cases:
        t.eq(harness.url_passwords(url), want, f"DATABASE_URL passwords of {url.split('@')[-1]}")
    forms = dict((f, n) for n, f in harness.secret_forms("Head1234@Tail5678", "database password"))
    t.ok(set(forms) == {"as given", "URL-encoded", "a piece of it"},
         "a password is looked for as given, URL-encoded and in pieces", forms)
    sweep = harness.Sweep()
    sweep.add("bot token", "12345:" + "A" * 35)
    t.eq(sweep.redact("got 12345:" + "A" * 35 + " and " + "A" * 35), "got <bot token> and <bot token>",
         "diagnostics mask a token and its part after the colon")


async def main(h):
    t = h.t
    check_parsing(t)
    secrets = {ENV_TOKEN: bh.random_token(), ENV_SECRET: harness.random_secret(),
               ENV_PASSWORD: harness.random_password()}
    for var, kind in ((ENV_TOKEN, "bot token"), (ENV_SECRET, "webhook secret"),
                      (ENV_PASSWORD, "database password")):
        h.sweep.add(kind, secrets[var])
    env = dict(os.environ, **secrets)

    def child(mode):
        p = subprocess.run([sys.executable, os.path.abspath(__file__), mode], env=env,
                           capture_output=True, text=True, timeout=240)
        return p.returncode, p.stdout, p.stderr

    rc, out, err = await asyncio.to_thread(child, "--plant")
    t.eq(rc, 1, "a run with planted leaks fails", out, err)
    failed = [ln for ln in out.splitlines() if ln.startswith("not ok")]
    m = re.search(r"leaky port (\d+), excluded port (\d+)", err)
    leaky, fine = m.groups() if m else ("?", "?")
    want = [r"the webhook secret \(as given\) leaked into the output of tgring-serve\d+, line \d+$",
            r"the bot token \(as given\) leaked into the 500 answer "
            rf"to GET /metrics from port {leaky} \(head\), line 2$",
            r"the database password \(URL-encoded\) leaked into the 500 answer to GET /metrics "
            rf"from port {leaky} \(body\), line 1$"]
    for pattern in want:
        t.ok(any(re.search(pattern, ln) for ln in failed),
             f"it reports: {pattern.split(' leaked')[0].replace(chr(92), '')}", out)
    t.eq(len(failed), len(want), "and nothing else (tgring's own output is clean; the "
         "excluded port's answer is not looked at)", out)
    t.ok(fine not in "".join(failed), "the excluded port is named in no report", out)
    sweep = harness.Sweep()
    for var, kind in ((ENV_TOKEN, "bot token"), (ENV_SECRET, "webhook secret"),
                      (ENV_PASSWORD, "database password")):
        sweep.add(kind, secrets[var])
    sweep.capture("the planted run's stdout and stderr", out + err)
    t.eq(sweep.findings(), [], "the failing run prints none of the secrets in any form")

    rc, out, err = await asyncio.to_thread(child, "--clean")
    t.eq(rc, 0, "the same run without plants passes", out, err)
    t.ok(re.search(r"^ok \d+ - no secret \(bot token, database password, webhook secret\) in "
                   r"any of the \d+ outputs captured from tgring$", out, re.M),
         "and its sweep looked for all three kinds", out)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        plant = sys.argv[1] == "--plant"
        harness.run(lambda h: scenario(h, plant), name="secrets_sweep" + sys.argv[1][1:])
    else:
        harness.run(main)
