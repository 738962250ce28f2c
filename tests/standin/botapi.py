#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A local stand-in for the Telegram Bot API, for tests, scripts/run and bench.

Serves https://127.0.0.1:<port>/bot<token>/<method> (or plain http with
--plain) with the answers tgring needs: getMe, sendMessage, setWebhook,
deleteWebhook, getWebhookInfo, and {"ok":true,"result":true} for any other
method. A token other than --token gets 401. HTTP/1.1 keep-alive with
Content-Length; every TCP connection has its own thread.

Every call is recorded, one JSON object per line, flushed per line, to
--record (and kept in memory for the control API):
  {"seq", "time" (time.time() at arrival), "conn" (stable per TCP connection),
   "req_on_conn" (1 for the first request on it), "tls", "tls_version",
   "cipher", "session_reused" (null over plain HTTP), "http_method",
   "method", "token_ok", "content_type", "body" (parsed JSON, or form/query
   fields as a dict of strings, or null), "body_len", "status" (null when the
   connection was reset or the answer truncated), "mode" (behaviour applied)}
The token itself is never recorded.

A control API (plain HTTP on 127.0.0.1:--control-port) steers it:
  GET  /calls           the records, as a JSON array
  POST /calls/clear     forget them (the --record file keeps everything)
  POST /behave          add a behaviour (an object or a list of them)
  GET  /behave          the behaviours left, with their remaining counts
  POST /behave/clear    drop all behaviours
  GET  /stats           {"connections", "open", "handshakes", "handshakes_full",
                         "resumed", "handshake_failures", "requests", "calls",
                         "calls_dropped" (past --keep)}
  POST /webhook         set getWebhookInfo's fields: url, pending_update_count,
                        last_error_date, last_error_message, max_connections, ...
  POST /reset           calls, behaviours, stats, webhook and message ids back to new
Behaviours are tried in the order added; the first that matches a call and has
count left decides its answer and uses one. Each may name "method" (any case)
and "chat_id" (matched as text against the call's chat_id) to narrow what it
matches; "count" is how many calls it takes (-1: no limit; default 1, but no
limit for "final" and "migrate", as a blocked or migrated chat stays so):
  {"mode":"429","chat_id":5,"retry_after":2}       429, parameters.retry_after and
                                                   a Retry-After header
  {"mode":"429_global","retry_after":2}            the same for the next call of any chat
  {"mode":"5xx","status":502,"count":2}            Telegram-style JSON error; "html":true
                                                   for a proxy's HTML page instead
  {"mode":"slow","delay_ms":3000}                  the normal answer, that much later
  {"mode":"truncate"}                              headers with a Content-Length larger
                                                   than the body sent, then close
                                                   ("close_notify":true to end TLS cleanly)
  {"mode":"reset"}                                 close without answering, with a TCP
                                                   RST (SO_LINGER 0)
  {"mode":"migrate","chat_id":-5,"to":-1005}       400 with parameters.migrate_to_chat_id
  {"mode":"final","chat_id":7,"status":403,"description":"Forbidden: bot was blocked by the user"}
"ready <port> <control_port>" goes to stdout once both ports listen (0 picks
free ones); SIGTERM or SIGINT stops it cleanly with exit status 0.

Usage: botapi.py [--plain | --cert PEM --key PEM] [--port N] [--control-port N]
                 [--token T] [--record FILE] [--keep N] [--latency-ms N]
                 [--tls-max 1.2] [--verbose]
Only the Python standard library is used.
"""

import argparse
import http.server
import itertools
import json
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.parse

DEFAULT_TOKEN = "123456:TEST-token-for-the-local-stand-in_0000"
MAX_BODY = 16 << 20

# Descriptions Telegram sends with each status.
DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; make sure that only one bot "
         "instance is running",
    429: "Too Many Requests: retry after {}",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

MODES = ("429", "429_global", "5xx", "slow", "truncate", "reset", "migrate", "final")


class State:
    """Everything the API threads and the control API share, under one lock."""

    def __init__(self, token, record_path, keep, latency):
        self.lock = threading.Lock()
        self.token = token
        self.keep = keep
        self.latency = latency
        self.record = open(record_path, "a", encoding="utf-8") if record_path else None
        self.conn_ids = itertools.count(1)
        self.reset()

    def reset(self):
        with self.lock:
            self.calls = []
            self.seq = 0
            self.behaviours = []
            self.stats = {"connections": 0, "open": 0, "handshakes": 0, "handshakes_full": 0,
                          "resumed": 0, "handshake_failures": 0, "requests": 0,
                          "calls_dropped": 0}
            self.webhook = {"url": "", "has_custom_certificate": False,
                            "pending_update_count": 0}
            self.message_ids = {}

    def count(self, key, delta=1):
        with self.lock:
            self.stats[key] += delta

    def add_call(self, rec):
        with self.lock:
            self.seq += 1
            rec["seq"] = self.seq
            self.calls.append(rec)
            if len(self.calls) > self.keep:
                # Memory stays flat on long bench runs; the file has everything.
                drop = len(self.calls) - self.keep
                del self.calls[:drop]
                self.stats["calls_dropped"] += drop
            if self.record is not None:
                self.record.write(json.dumps(rec, ensure_ascii=False) + "\n")
                self.record.flush()

    def take_behaviour(self, method, chat_id):
        """The first behaviour that matches, with one use taken from it; or None."""
        with self.lock:
            for b in self.behaviours:
                if b["count"] == 0:
                    continue
                if "method" in b and b["method"].lower() != method.lower():
                    continue
                if "chat_id" in b and (chat_id is None or str(b["chat_id"]) != str(chat_id)):
                    continue
                if b["count"] > 0:
                    b["count"] -= 1
                return dict(b)
        return None

    def add_behaviour(self, b):
        if not isinstance(b, dict) or b.get("mode") not in MODES:
            raise ValueError("mode must be one of " + ", ".join(MODES))
        b = dict(b)
        unlimited = b["mode"] in ("final", "migrate")
        b["count"] = int(b.get("count", -1 if unlimited else 1))
        if b["mode"] == "migrate" and "to" not in b:
            raise ValueError("migrate needs \"to\"")
        with self.lock:
            self.behaviours.append(b)

    def next_message_id(self, chat_id):
        with self.lock:
            n = self.message_ids.get(str(chat_id), 0) + 1
            self.message_ids[str(chat_id)] = n
            return n


def bot_user(token):
    head = token.split(":", 1)[0]
    return {"id": int(head) if head.isdigit() else 123456, "is_bot": True,
            "first_name": "Quit Smoking", "username": "quit_smoking_test_bot"}


def chat_of(chat_id):
    """A Chat object for chat_id as Telegram would describe it."""
    if isinstance(chat_id, str) and chat_id.startswith("@"):
        return {"id": -1001000000001, "title": chat_id[1:], "username": chat_id[1:],
                "type": "channel"}
    cid = int(chat_id)
    if cid > 0:
        return {"id": cid, "first_name": "Test", "username": "user%d" % cid, "type": "private"}
    if str(cid).startswith("-100"):
        return {"id": cid, "title": "Test supergroup", "type": "supergroup"}
    return {"id": cid, "title": "Test group", "type": "group",
            "all_members_are_administrators": True}


def utf16_len(s):
    return len(s.encode("utf-16-le")) // 2


def error(status, description=None, parameters=None):
    body = {"ok": False, "error_code": status,
            "description": description or DESCRIPTIONS.get(status, "Error")}
    if parameters:
        body["parameters"] = parameters
    return status, body


class Api:
    """The Bot API methods: (state, params) -> (status, JSON body)."""

    def __init__(self, state):
        self.state = state

    def call(self, method, params):
        fn = getattr(self, "m_" + method.lower(), None)
        if fn is None:
            return 200, {"ok": True, "result": True}
        return fn(params)

    def m_getme(self, p):
        u = bot_user(self.state.token)
        u.update({"can_join_groups": True, "can_read_all_group_messages": False,
                  "supports_inline_queries": False, "can_connect_to_business": False,
                  "has_main_web_app": False})
        return 200, {"ok": True, "result": u}

    def m_sendmessage(self, p):
        chat_id = p.get("chat_id")
        if chat_id is None or chat_id == "":
            return error(400, "Bad Request: chat_id is empty")
        try:
            chat = chat_of(chat_id)
        except (TypeError, ValueError):
            return error(400, "Bad Request: chat not found")
        text = p.get("text")
        if not isinstance(text, str) or text.strip() == "":
            return error(400, "Bad Request: message text is empty")
        if utf16_len(text) > 4096:
            return error(400, "Bad Request: message is too long")
        msg = {"message_id": self.state.next_message_id(chat["id"]),
               "from": bot_user(self.state.token), "chat": chat, "date": int(time.time()),
               "text": text}
        for key in ("entities", "reply_markup", "link_preview_options"):
            if key in p:
                v = p[key]
                if isinstance(v, str):
                    try:
                        v = json.loads(v)
                    except ValueError:
                        return error(400, "Bad Request: can't parse " + key)
                msg[key] = v
        return 200, {"ok": True, "result": msg}

    def m_setwebhook(self, p):
        url = p.get("url", "")
        if url == "":
            return self.m_deletewebhook(p)
        if not isinstance(url, str) or not url.startswith("https://"):
            return error(400, "Bad Request: bad webhook: An HTTPS URL must be provided for "
                              "webhook")
        with self.state.lock:
            w = self.state.webhook
            same = w.get("url") == url
            w["url"] = url
            w["max_connections"] = int(p.get("max_connections", 40))
            allowed = p.get("allowed_updates")
            if isinstance(allowed, str):
                allowed = json.loads(allowed)
            if allowed is not None:
                w["allowed_updates"] = allowed
            if str(p.get("drop_pending_updates", "")).lower() in ("true", "1"):
                w["pending_update_count"] = 0
            w["ip_address"] = "127.0.0.1"
        return 200, {"ok": True, "result": True,
                     "description": "Webhook is already set" if same else "Webhook was set"}

    def m_deletewebhook(self, p):
        with self.state.lock:
            had = self.state.webhook.get("url", "") != ""
            self.state.webhook = {"url": "", "has_custom_certificate": False,
                                  "pending_update_count":
                                      self.state.webhook.get("pending_update_count", 0)}
        return 200, {"ok": True, "result": True,
                     "description": "Webhook was deleted" if had else
                     "Webhook is already deleted"}

    def m_getwebhookinfo(self, p):
        with self.state.lock:
            info = dict(self.state.webhook)
        return 200, {"ok": True, "result": info}


def parse_params(content_type, body, query):
    """The call's parameters: JSON object, form fields or query fields; None if unreadable."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if body:
        if ctype == "application/json":
            try:
                v = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return None
            return v if isinstance(v, dict) else None
        if ctype == "application/x-www-form-urlencoded":
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                return None
            return {k: v[0] for k, v in urllib.parse.parse_qs(text, keep_blank_values=True)
                    .items()}
        return None
    return {k: v[0] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}


class ApiHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx/1.18.0"
    # Idle keep-alive connections are closed after this long (s).
    timeout = 120

    def setup(self):
        super().setup()
        self.conn_id = self.client_address[2]
        self.req_on_conn = 0
        # Set when a behaviour cut the connection: nothing more is sent on it.
        self.cut = False

    def handle(self):
        st = self.server.state
        conn = self.connection
        if isinstance(conn, ssl.SSLSocket):
            try:
                conn.settimeout(10)
                conn.do_handshake()
                conn.settimeout(self.timeout)
            except (ssl.SSLError, OSError):
                st.count("handshake_failures")
                return
            st.count("handshakes")
            st.count("resumed" if conn.session_reused else "handshakes_full")
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, socket.timeout):
            pass

    def finish(self):
        try:
            super().finish()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        conn = self.connection
        if isinstance(conn, ssl.SSLSocket) and not self.cut:
            # OpenSSL drops a session from its cache when the connection ends without a
            # close_notify from us, and the client could then not resume it. unwrap() sends
            # one, then waits for the client's, which may never come: not for long.
            try:
                conn.settimeout(1)
                conn.unwrap()
            except (ssl.SSLError, OSError, ValueError):
                pass
        self.server.state.count("open", -1)

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("botapi: conn %d: %s\n" % (self.conn_id, fmt % args))

    def do_GET(self):
        self.serve()

    def do_POST(self):
        self.serve()

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if te == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                if len(out) + size > MAX_BODY:
                    raise ValueError("body too big")
                out += self.rfile.read(size)
                self.rfile.readline(8)
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(n) if n else b""

    def serve(self):
        arrival = time.time()
        st = self.server.state
        st.count("requests")
        self.req_on_conn += 1
        try:
            body = self.read_body()
        except ValueError:
            self.send_json(400, {"ok": False, "error_code": 400,
                                 "description": "Bad Request: bad body"})
            self.close_connection = True
            return
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.split("/")
        conn = self.connection
        tls = isinstance(conn, ssl.SSLSocket)
        rec = {"time": arrival, "conn": self.conn_id, "req_on_conn": self.req_on_conn,
               "tls": tls, "tls_version": conn.version() if tls else None,
               "cipher": conn.cipher()[0] if tls and conn.cipher() else None,
               "session_reused": conn.session_reused if tls else None,
               "http_method": self.command, "method": None, "token_ok": False,
               "content_type": self.headers.get("Content-Type"), "body": None,
               "body_len": len(body), "status": None, "mode": None}

        # /bot<token>/<method>
        if len(parts) != 3 or parts[0] != "" or not parts[1].startswith("bot") or not parts[2]:
            rec["status"] = 404
            st.add_call(rec)
            self.send_json(*error(404))
            return
        token, method = urllib.parse.unquote(parts[1][3:]), parts[2]
        params = parse_params(rec["content_type"], body, url.query)
        rec.update(method=method, token_ok=token == st.token, body=params)
        if token != st.token:
            rec["status"] = 401
            st.add_call(rec)
            self.send_json(*error(401))
            return

        chat_id = params.get("chat_id") if isinstance(params, dict) else None
        b = st.take_behaviour(method, chat_id)
        mode = b["mode"] if b else None
        rec["mode"] = mode
        headers = {}
        if mode in ("429", "429_global"):
            ra = int(b.get("retry_after", 1))
            status, answer = error(429, DESCRIPTIONS[429].format(ra), {"retry_after": ra})
            headers["Retry-After"] = str(ra)
        elif mode == "5xx":
            status = int(b.get("status", 502))
            if b.get("html"):
                rec["status"] = status
                st.add_call(rec)
                self.send_html(status)
                return
            status, answer = error(status, b.get("description"))
        elif mode == "migrate":
            status, answer = error(400, "Bad Request: group chat was upgraded to a supergroup "
                                        "chat", {"migrate_to_chat_id": int(b["to"])})
        elif mode == "final":
            status = int(b.get("status", 400))
            status, answer = error(status, b.get("description"))
        else:
            try:
                status, answer = Api(st).call(method, params if isinstance(params, dict)
                                              else {})
            except (TypeError, ValueError) as e:
                status, answer = error(400, "Bad Request: " + str(e))

        if mode == "reset":
            st.add_call(rec)
            self.reset_connection()
            return
        if mode != "truncate":
            rec["status"] = status
        st.add_call(rec)
        delay = st.latency + (int(b.get("delay_ms", 1000)) if mode == "slow" else 0)
        if delay > 0:
            time.sleep(delay / 1000.0)
        if mode == "truncate":
            self.send_truncated(status, answer, bool(b.get("close_notify")))
            return
        self.send_json(status, answer, headers)

    def send_json(self, status, obj, headers=None):
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_html(self, status):
        reason = self.responses.get(status, ("Error",))[0]
        data = ("<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s"
                "</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"
                % (status, reason, status, reason)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_truncated(self, status, obj, close_notify):
        data = json.dumps(obj, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data) + 100))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.cut = True
        conn = self.connection
        if close_notify and isinstance(conn, ssl.SSLSocket):
            try:
                # unwrap() also waits for the peer's close_notify: not for long.
                conn.settimeout(1)
                conn.unwrap()
            except (ssl.SSLError, OSError):
                pass
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def reset_connection(self):
        self.close_connection = True
        self.cut = True
        conn = self.connection
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # The descriptor closes once rfile lets go of it too; with SO_LINGER 0 and no TLS
        # close_notify first, the kernel answers with a RST.
        conn.close()
        self.rfile.close()


class ApiServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, state, ssl_ctx, verbose):
        self.state = state
        self.ssl_ctx = ssl_ctx
        self.verbose = verbose
        super().__init__(addr, ApiHandler)

    def get_request(self):
        sock, addr = self.socket.accept()
        cid = next(self.state.conn_ids)
        self.state.count("connections")
        self.state.count("open")
        if self.ssl_ctx is not None:
            # The handshake happens in the connection's thread, so a slow client stalls no one.
            sock = self.ssl_ctx.wrap_socket(sock, server_side=True,
                                            do_handshake_on_connect=False)
        return sock, (addr[0], addr[1], cid)

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


class ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("botapi control: %s\n" % (fmt % args))

    def reply(self, status, obj):
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        st = self.server.state
        with st.lock:
            if self.path == "/calls":
                obj = list(st.calls)
            elif self.path == "/stats":
                obj = dict(st.stats, calls=len(st.calls))
            elif self.path == "/behave":
                obj = [dict(b) for b in st.behaviours if b["count"] != 0]
            elif self.path == "/webhook":
                obj = dict(st.webhook)
            elif self.path == "/health":
                obj = {"ok": True}
            else:
                obj = None
        if obj is None:
            self.reply(404, {"ok": False, "error": "no such path"})
        else:
            self.reply(200, obj)

    def do_DELETE(self):
        if self.path == "/calls":
            return self.post("/calls/clear", None)
        if self.path == "/behave":
            return self.post("/behave/clear", None)
        self.reply(404, {"ok": False, "error": "no such path"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            return self.reply(400, {"ok": False, "error": "body is not JSON"})
        self.post(self.path, body)

    def post(self, path, body):
        st = self.server.state
        try:
            if path == "/calls/clear":
                with st.lock:
                    st.calls = []
            elif path == "/behave":
                for b in body if isinstance(body, list) else [body]:
                    st.add_behaviour(b)
            elif path == "/behave/clear":
                with st.lock:
                    st.behaviours = []
            elif path == "/webhook":
                if not isinstance(body, dict):
                    raise ValueError("an object is expected")
                with st.lock:
                    st.webhook.update(body)
            elif path == "/reset":
                st.reset()
            else:
                return self.reply(404, {"ok": False, "error": "no such path"})
        except (ValueError, TypeError, KeyError) as e:
            return self.reply(400, {"ok": False, "error": str(e)})
        self.reply(200, {"ok": True})


class ControlServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr, state, verbose):
        self.state = state
        self.verbose = verbose
        super().__init__(addr, ControlHandler)


def main():
    ap = argparse.ArgumentParser(description="Local Telegram Bot API stand-in.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--cert", help="server certificate (PEM, may hold the chain)")
    ap.add_argument("--key", help="its private key (PEM)")
    ap.add_argument("--plain", action="store_true", help="serve plain HTTP instead of HTTPS")
    ap.add_argument("--tls-max", choices=("1.2", "1.3"), default="1.3",
                    help="highest TLS version offered (the lowest is always 1.2)")
    ap.add_argument("--token", default=DEFAULT_TOKEN, help="the bot token that is accepted")
    ap.add_argument("--record", help="append every call to this JSONL file")
    ap.add_argument("--keep", type=int, default=100000,
                    help="calls kept in memory for GET /calls (the oldest go first)")
    ap.add_argument("--latency-ms", type=int, default=0,
                    help="added to every answer, like the round trip to Telegram")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = ap.parse_args()

    ctx = None
    if not args.plain:
        if not args.cert or not args.key:
            ap.error("--cert and --key are needed unless --plain")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if args.tls_max == "1.2":
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.cert, args.key)
        # OpenSSL keeps a server-side session cache by default (and Python sets the session
        # ID context), so clients can resume by session ID, BearSSL's way, as well as by
        # ticket. But OpenSSL 3 takes a client's close without close_notify for a fatal error
        # and drops the session from the cache: tolerate that, as web servers do.
        ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)

    state = State(args.token, args.record, max(1, args.keep), max(0, args.latency_ms))
    api = ApiServer((args.host, args.port), state, ctx, args.verbose)
    control = ControlServer(("127.0.0.1", args.control_port), state, args.verbose)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1},
                                daemon=True) for s in (api, control)]
    for t in threads:
        t.start()
    print("ready %d %d" % (api.server_address[1], control.server_address[1]), flush=True)
    while not stop.wait(0.5):
        pass
    for s in (api, control):
        s.shutdown()
        s.server_close()
    if state.record is not None:
        with state.lock:
            state.record.close()
            state.record = None
    return 0


if __name__ == "__main__":
    sys.exit(main())
