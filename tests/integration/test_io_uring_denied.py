#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""When a seccomp profile forbids io_uring (Docker's default answers EPERM,
Podman's ENOSYS), `tgring serve` exits 1 at once with one line that says so
and names the fix, instead of hanging or crashing."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Tap, free_port, sanitizer_env  # noqa: E402

tap = Tap()
wrapper = os.environ["DENY_IO_URING"]
binary = os.environ["TGRING_BIN"]
env = dict(os.environ)
env.update(sanitizer_env())
env.update({
    # Nothing listens there: serve warns that it cannot check the schema and
    # goes on to set up the ring, which is what this test is about.
    "DATABASE_URL": "host=127.0.0.1 port=%d user=nobody dbname=none connect_timeout=2" % free_port(),
    "TELEGRAM_WEBHOOK_SECRET": "test-secret",
    "TGRING_LISTEN": "127.0.0.1:%d" % free_port(),
    "LOG_FORMAT": "text",
})
env.pop("TELEGRAM_BOT_TOKEN", None)

for errname, needle in (("EPERM", "seccomp"), ("ENOSYS", "seccomp")):
    try:
        p = subprocess.run([wrapper, errname, binary, "serve"], env=env, capture_output=True,
                           text=True, timeout=30)
    except subprocess.TimeoutExpired:
        tap.ok(False, "%s: serve exits instead of hanging" % errname)
        continue
    tap.eq(p.returncode, 1, "%s: serve exits 1" % errname, p.stderr[-2000:])
    lines = [l for l in p.stderr.splitlines() if l.startswith("tgring: ") and "io_uring" in l]
    tap.eq(len(lines), 1, "%s: one line on stderr explains it" % errname, p.stderr[-2000:])
    line = lines[0] if lines else ""
    tap.ok("(%s)" % errname in line, "%s: the line names the error" % errname, line)
    tap.ok(needle in line and "seccomp/tgring.json" in line,
           "%s: the line names the fix (the shipped seccomp profile)" % errname, line)
    tap.ok("AddressSanitizer" not in p.stderr and "runtime error:" not in p.stderr,
           "%s: no sanitizer report" % errname)

sys.exit(tap.finish())
