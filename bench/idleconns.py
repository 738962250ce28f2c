#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""idleconns.py - opens N keep-alive connections to a server, sends one
request on each, reads every response and keeps the connections open while
it samples the server's resident memory (VmRSS, VmHWM in /proc/PID/status).

Used by bench/run for the memory scenario: the server's cost per idle
connection. Prints one JSON line on stdout. Exits 1 if a connection fails or
a response is not 200.

Usage: idleconns.py HOST PORT PATH COUNT PID [HOLD_SECONDS]
"""

import json
import selectors
import socket
import sys
import time


def status_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def main():
    host, port, path, count, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    hold = float(sys.argv[6]) if len(sys.argv) > 6 else 2.0
    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    before = status_kb(pid)
    t0 = time.monotonic()

    sel = selectors.DefaultSelector()
    socks = []
    bufs = {}
    failed = 0
    # Blocking connects: the kernel completes the handshake into the listen
    # backlog, so this does not wait for the server to accept each one.
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(5)
            s.connect((host, port))
            s.sendall(req)
            s.setblocking(False)
        except OSError as e:
            failed += 1
            print(f"idleconns: connect/send: {e}", file=sys.stderr)
            s.close()
            continue
        socks.append(s)
        bufs[s] = b""
        sel.register(s, selectors.EVENT_READ)

    statuses = {}
    pending = len(socks)
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                failed += 1
                sel.unregister(s)
                pending -= 1
                continue
            bufs[s] += data
            b = bufs[s]
            head, sep, body = b.partition(b"\r\n\r\n")
            if not sep:
                continue
            clen = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    clen = int(v)
            if len(body) < clen:
                continue
            code = int(head[9:12])
            statuses[code] = statuses.get(code, 0) + 1
            sel.unregister(s)
            pending -= 1
    setup_s = time.monotonic() - t0
    failed += pending

    time.sleep(hold)
    # Still open? A connection the server closed would read EOF now.
    closed = 0
    for s in socks:
        try:
            if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    held = status_kb(pid)
    for s in socks:
        s.close()
    time.sleep(1)
    after = status_kb(pid)

    res = {
        "connections": count,
        "open_held": len(socks) - closed,
        "failed": failed,
        "statuses": statuses,
        "setup_s": round(setup_s, 3),
        "before_kb": before,
        "held_kb": held,
        "after_close_kb": after,
    }
    print(json.dumps(res))
    ok = failed == 0 and closed == 0 and statuses.get(200, 0) == count
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
