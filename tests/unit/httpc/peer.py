#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# A misbehaving HTTP/1.1 server for the httpc tests, plain or over TLS
# (python's ssl module). It prints the port it listens on, then serves each
# connection in a thread; what it answers depends on the request path:
#   /ok            200, Content-Length, kept alive
#   /echo          200, "METHOD PATH|content-type|body" of the request
#   /chunked       200, chunked in several pieces sent apart, with an extension and a trailer
#   /chunked-big   200, chunked, 2 MiB
#   /big           200, Content-Length: 2 MiB (the client refuses it from the head)
#   /eof           200 without length; the body ends with the connection (TLS: close_notify)
#   /eof-abrupt    the same, but over TLS the TCP connection ends without close_notify
#   /trunc         Content-Length: 100, 10 bytes, then the connection ends (no close_notify)
#   /hang          never answers
#   /close         200 with "Connection: close", then closes
#   /http10        HTTP/1.0 200 with Content-Length, then closes
#   /stale         on a connection that already served a request: closes without answering
#   /garbage       not HTTP
#   /interim       100 Continue, then 200
#   /retry         429 with Retry-After: 7
# Usage: peer.py [CERT KEY]
import socket
import ssl
import sys
import threading
import time

OK = b'{"ok":true,"result":{}}'


def resp(status, body, extra=b""):
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def abrupt(conn):
    # For an SSLSocket, shutdown() drops the TLS layer first: a TCP FIN, no close_notify.
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()


def clean(conn, tls):
    if tls:
        try:
            conn = conn.unwrap()  # sends close_notify
        except (OSError, ValueError):
            pass
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(2)
        while conn.recv(4096):
            pass
    except OSError:
        pass
    conn.close()


def read_request(conn, buf):
    while b"\r\n\r\n" not in buf:
        d = conn.recv(65536)
        if not d:
            return None
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, path, _ = lines[0].split(b" ")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get(b"content-length", b"0"))
    while len(rest) < n:
        d = conn.recv(65536)
        if not d:
            return None
        rest += d
    return method, path, hdrs, rest[:n], rest[n:]


def handle(conn, tls):
    served = 0
    buf = b""
    try:
        if tls:
            conn = tls.wrap_socket(conn, server_side=True)
        while True:
            r = read_request(conn, buf)
            if r is None:
                conn.close()
                return
            method, path, hdrs, body, buf = r
            if path == b"/ok":
                conn.sendall(resp(b"200 OK", OK))
            elif path == b"/echo":
                conn.sendall(resp(b"200 OK", method + b" " + path + b"|"
                                  + hdrs.get(b"content-type", b"-") + b"|" + body))
            elif path == b"/chunked":
                parts = [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n",
                         b"7;ext=1\r\n{\"ok\":t\r\n", b"4\r\nrue,\r\n",
                         b"D\r\n\"result\":[1,2\r\n", b"3\r\n]}\n\r\n0\r\nX-Trailer: 1\r\n\r\n"]
                for p in parts:
                    conn.sendall(p)
                    time.sleep(0.02)
            elif path == b"/chunked-big":
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                chunk = b"x" * 65536
                try:
                    for _ in range(32):
                        conn.sendall(b"10000\r\n" + chunk + b"\r\n")
                    conn.sendall(b"0\r\n\r\n")
                except OSError:
                    pass
            elif path == b"/big":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2097152\r\n\r\n")
                try:
                    conn.sendall(b"x" * 2097152)
                except OSError:
                    pass
            elif path in (b"/eof", b"/eof-abrupt"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
                time.sleep(0.05)
                if path == b"/eof":
                    clean(conn, tls)
                else:
                    abrupt(conn)
                return
            elif path == b"/trunc":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                time.sleep(0.05)
                abrupt(conn)
                return
            elif path == b"/hang":
                time.sleep(30)
                return
            elif path == b"/close":
                conn.sendall(resp(b"200 OK", OK, b"Connection: close\r\n"))
                clean(conn, tls)
                return
            elif path == b"/http10":
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: " + str(len(OK)).encode()
                             + b"\r\n\r\n" + OK)
                clean(conn, tls)
                return
            elif path == b"/stale":
                if served > 0:
                    abrupt(conn)
                    return
                conn.sendall(resp(b"200 OK", OK))
            elif path == b"/garbage":
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                time.sleep(0.5)
                abrupt(conn)
                return
            elif path == b"/interim":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                time.sleep(0.02)
                conn.sendall(resp(b"200 OK", OK))
            elif path == b"/retry":
                conn.sendall(resp(b"429 Too Many Requests",
                                  b'{"ok":false,"error_code":429,"parameters":{"retry_after":7}}',
                                  b"Retry-After: 7\r\n"))
            else:
                conn.sendall(resp(b"404 Not Found", b'{"ok":false}'))
            served += 1
    except (OSError, ssl.SSLError, ValueError):
        try:
            conn.close()
        except OSError:
            pass


def main():
    tls = None
    if len(sys.argv) == 3:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.maximum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(sys.argv[1], sys.argv[2])
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    print(ls.getsockname()[1], flush=True)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=handle, args=(conn, tls), daemon=True).start()


if __name__ == "__main__":
    main()
