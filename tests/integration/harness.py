# SPDX-License-Identifier: MIT
"""Shared pieces of the integration tests: the real tgring binary against a
real, throwaway PostgreSQL cluster.

Each test program imports this module and calls run(main): it gets a Harness
that starts PostgreSQL clusters and tgring processes on free ports, a raw
keep-alive HTTP/1.1 client over asyncio streams, and a TAP reporter. Whatever
the test started is stopped and removed at the end, also when the test fails
or is killed, and every tgring log is checked for sanitizer reports.

Environment: TGRING_BIN (the binary; default <src>/build/tgring) and
TGRING_SRC (the source tree; default two levels above this file). Only the
standard library is used.
"""

import asyncio
import atexit
import glob
import http.client
import json
import os
import pwd
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

SRC = os.environ.get("TGRING_SRC") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("TGRING_BIN") or os.path.join(SRC, "build", "tgring")

# Every temporary directory of a test run carries this prefix and a file
# naming the owning test process, so that a later run can remove what a
# killed run left behind.
TMP_PREFIX = "tgring-it-"
OWNER_FILE = "owner.pid"

# Lines that mean a sanitizer found something in tgring.
SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                          r"runtime error:|ThreadSanitizer|MemorySanitizer")

# Variables passed through from the test's environment to tgring; everything
# else (a developer's DATABASE_URL, TGRING_*, ...) is left out so that each
# test says exactly what tgring sees.
PASS_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR", "MALLOC_PERTURB_", "LSAN_OPTIONS")

ASAN_REQUIRED = {"halt_on_error": "1", "abort_on_error": "1", "detect_leaks": "1"}
UBSAN_REQUIRED = {"halt_on_error": "1", "abort_on_error": "1", "print_stacktrace": "1"}


def _merge_opts(current, required):
    opts = {}
    for part in (current or "").split(":"):
        if "=" in part:
            k, v = part.split("=", 1)
            opts[k] = v
    opts.update(required)
    return ":".join(f"{k}={v}" for k, v in opts.items())


def sanitizer_env(extra_asan=None):
    """ASAN_OPTIONS/UBSAN_OPTIONS for tgring: the caller's plus the ones the
    suite relies on (stop at the first report, abort, check leaks)."""
    asan = dict(ASAN_REQUIRED)
    asan.update(extra_asan or {})
    return {
        "ASAN_OPTIONS": _merge_opts(os.environ.get("ASAN_OPTIONS"), asan),
        "UBSAN_OPTIONS": _merge_opts(os.environ.get("UBSAN_OPTIONS"), UBSAN_REQUIRED),
    }


# ---- TAP ---------------------------------------------------------------------


class Tap:
    """TAP producer: numbered results as they come, the plan at the end."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    @staticmethod
    def diag(text):
        # On stderr: meson shows a failed TAP test's stderr, not its stdout.
        # Known secrets are masked, so that a failure's diagnostics (a log's
        # tail, a command's output) do not spread what tgring leaked.
        for line in redact(str(text)).splitlines() or [""]:
            print("# " + line, file=sys.stderr, flush=True)

    def ok(self, cond, desc, *diag):
        self.n += 1
        desc = redact(str(desc)).replace("#", "no.").replace("\n", " ")
        print(f"{'ok' if cond else 'not ok'} {self.n} - {desc}", flush=True)
        if not cond:
            self.failed += 1
            print(f"not ok {self.n} - {desc}", file=sys.stderr, flush=True)
            for d in diag:
                self.diag(d() if callable(d) else d)
        return bool(cond)

    def eq(self, got, want, desc, *diag):
        return self.ok(got == want, desc, f"got:  {got!r}", f"want: {want!r}", *diag)

    def skip(self, desc, reason):
        self.n += 1
        print(f"ok {self.n} - {desc} # SKIP {reason}", flush=True)

    def finish(self):
        if self.n == 0:
            self.ok(False, "the test reported nothing")
        print(f"1..{self.n}", flush=True)
        if self.failed:
            self.diag(f"{self.failed} of {self.n} failed")
        return 1 if self.failed else 0


# ---- the secrets sweep -----------------------------------------------------------
#
# tgring promises that its bot token, webhook secret and database password
# never appear in a log line, a metric or an answer. The harness learns every
# secret a test hands to tgring (its environment, NAME_FILE files, clusters'
# passwords), keeps everything tgring said back (its stdout and stderr,
# commands' stdout, every HTTP answer this module's clients read from it) and
# at the end looks for each secret, also percent-encoded, JSON-escaped and in
# the pieces libpq or a URL parser would cut it into.

# The variables tgring reads secrets from (also as NAME_FILE), and what they hold.
SECRET_VARS = {"TELEGRAM_BOT_TOKEN": "bot token", "TELEGRAM_WEBHOOK_SECRET": "webhook secret",
               "DATABASE_URL": "database password", "PGPASSWORD": "database password"}

# Shorter values (and shorter pieces of one) would match by chance: they are
# not swept, and the harness says so. Test secrets are random and longer.
SECRET_MIN = 8

# Characters that end a password early when a URL is read another way than it
# was meant (libpq on an unencoded '@' or '/'; '%' starts an escape).
_PIECE_SPLIT = re.compile(r"[@/%?#]")


def _unquote_conninfo(v):
    if len(v) >= 2 and v[0] == "'" and v[-1] == "'":
        return re.sub(r"\\(.)", r"\1", v[1:-1])
    return v


def url_passwords(url):
    """The passwords a DATABASE_URL holds, as written and as percent-decoded:
    a URI's user info (up to the last '@' of the authority, the widest reading
    of an unencoded '@' or '/') and `password=` parameters, or a conninfo
    string's `password=`. An unusable URL still yields what it holds."""
    url = url.strip()
    raw = []
    m = re.match(r"postgres(?:ql)?://", url)
    if m:
        rest = url[m.end():]
        q = rest.find("?")
        head = rest[:q] if q >= 0 and "@" in rest[:q] else rest
        at = head.rfind("@")
        if at >= 0 and ":" in head[:at]:
            raw.append(head[:at].split(":", 1)[1])
        if q >= 0:
            for part in rest[q + 1:].split("&"):
                k, _, v = part.partition("=")
                if k == "password":
                    raw.append(v)
    else:
        for k, v in re.findall(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", url):
            if k == "password":
                raw.append(_unquote_conninfo(v))
    out = []
    for v in raw:
        for form in (v, urllib.parse.unquote(v)):
            if form and form not in out:
                out.append(form)
    return out


def secret_forms(value, kind):
    """[(needle, form)]: the ways `value` could show up in tgring's output."""
    forms = [(value, "as given")]
    enc = urllib.parse.quote(value, safe="")
    forms += [(enc, "URL-encoded"), (re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), enc),
                                      "URL-encoded"),
              (urllib.parse.quote_plus(value, safe=""), "form-encoded"),
              (json.dumps(value)[1:-1], "JSON-escaped"),
              (json.dumps(value, ensure_ascii=False)[1:-1], "JSON-escaped"),
              (json.dumps(value)[1:-1].replace("/", "\\/"), "JSON-escaped")]
    if kind == "bot token" and ":" in value:
        # The part before the colon is the bot's id, which is public.
        forms.append((value.split(":", 1)[1], "the part after the colon"))
    if kind == "database password" and _PIECE_SPLIT.search(value):
        forms += [(p, "a piece of it") for p in _PIECE_SPLIT.split(value)]
    out, seen = [], set()
    for needle, form in forms:
        if len(needle) >= SECRET_MIN and needle not in seen:
            seen.add(needle)
            out.append((needle, form))
    return out


class Sweep:
    """The secrets a test gave tgring and what tgring said back.

    `files` is a list of (name, path) of tgring's outputs (the Harness's
    logs), read when the sweep runs so that their last lines are in. The
    current sweep (Sweep.current, set by the Harness or active()) receives
    what the HTTP clients below read. Sources that may hold a secret by
    design are never captured: exclude_port() names them."""

    current = None

    def __init__(self, files=None):
        self.files = files if files is not None else []
        self.secrets = {}   # value -> kind ("bot token", "webhook secret", ...)
        self.seen = {}      # captured text -> where it was first seen
        self.excluded = {}  # port -> why its answers are not tgring's
        self._needles = None

    def active(self):
        """A context manager that makes this the current sweep (for a test
        of the sweep itself); the previous one is current again after it."""
        sweep = self

        class _Active:
            def __enter__(self):
                self.prev, Sweep.current = Sweep.current, sweep
                return sweep

            def __exit__(self, *exc):
                Sweep.current = self.prev
        return _Active()

    def add(self, kind, value):
        if value and value not in self.secrets:
            self.secrets[value] = kind
            self._needles = None

    def add_env(self, env):
        """Learns the secrets of a tgring environment: each secret variable,
        the file NAME_FILE names (less one trailing newline, as tgring reads
        it), and the passwords in DATABASE_URL."""
        for var, kind in SECRET_VARS.items():
            values = [env.get(var)]
            if env.get(var + "_FILE"):
                try:
                    with open(env[var + "_FILE"], "rb") as f:
                        text = f.read().decode("utf-8", "replace")
                    values.append(re.sub(r"\r?\n\Z", "", text))
                except OSError:
                    pass
            for v in values:
                if not v:
                    continue
                for s in url_passwords(v) if var == "DATABASE_URL" else [v]:
                    self.add(kind, s)

    def exclude_port(self, port, why):
        """Answers read from `port` are not tgring's (`why` says whose)."""
        self.excluded[port] = why

    def capture(self, where, data, port=None):
        """Keeps `data` (bytes or text) that tgring sent, found at `where`."""
        if port in self.excluded or not data:
            return
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        self.seen.setdefault(text, where)

    def needles(self):
        """[(needle, kind, form)], longest first (so that redact() masks a
        whole secret before a piece of it)."""
        if self._needles is None:
            out = []
            for value, kind in self.secrets.items():
                out += [(n, kind, form) for n, form in secret_forms(value, kind)]
            self._needles = sorted(out, key=lambda x: -len(x[0]))
        return self._needles

    def unswept(self):
        """Kinds of the secrets too short to be swept."""
        return sorted({k for v, k in self.secrets.items() if len(v) < SECRET_MIN})

    def texts(self):
        for name, path in self.files:
            try:
                with open(path, "rb") as f:
                    yield f"the output of {name}", f.read().decode("utf-8", "replace")
            except OSError:
                pass
        for text, where in list(self.seen.items()):
            yield where, text

    def findings(self):
        """[(kind, forms, where)]: each secret kind found in each place, with
        the forms it was found in; `where` names the place and line, never
        the secret."""
        found = {}
        for where, text in self.texts():
            for needle, kind, form in self.needles():
                i = text.find(needle)
                if i < 0:
                    continue
                place = f"{where}, line {text.count(chr(10), 0, i) + 1}"
                forms = found.setdefault((kind, self.redact(place)), [])
                if form not in forms:
                    forms.append(form)
                # Masked (keeping offsets), so that a piece of a secret found
                # whole is not reported again on its own.
                text = text.replace(needle, "\0" * len(needle))
        return [(kind, forms, where) for (kind, where), forms in found.items()]

    def redact(self, text):
        for needle, kind, _ in self.needles():
            if needle in text:
                text = text.replace(needle, f"<{kind}>")
        return text

    def report(self, t):
        """One TAP line if nothing leaked, else one failed line per secret
        kind and place. Returns the number of findings."""
        found = self.findings()
        texts = len(self.files) + len(self.seen)
        kinds = ", ".join(sorted(set(self.secrets.values()))) or "none given"
        if not found:
            t.ok(True, f"no secret ({kinds}) in any of the {texts} outputs captured from tgring")
        for kind, forms, where in found[:20]:
            t.ok(False, f"the {kind} ({', '.join(forms)}) leaked into {where}")
        if len(found) > 20:
            t.diag(f"and {len(found) - 20} more places")
        for kind in self.unswept():
            t.diag(f"a {kind} shorter than {SECRET_MIN} characters was not swept")
        return len(found)


def redact(text):
    """`text` with every secret the current sweep knows masked as <kind>."""
    return Sweep.current.redact(text) if Sweep.current else text


def capture(where, data, port=None):
    """Gives what tgring sent to the current sweep, if any."""
    if Sweep.current:
        Sweep.current.capture(where, data, port)


# ---- small helpers -------------------------------------------------------------


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_root():
    return os.geteuid() == 0


def pg_bindir():
    """Directory of initdb/pg_ctl (not on PATH on Debian)."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: int(re.sub(r"\D", "", d.split("/")[-2]) or 0))
    for d in reversed(dirs):
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    path = shutil.which("initdb")
    if path:
        return os.path.dirname(path)
    raise RuntimeError("PostgreSQL server binaries (initdb) not found: apt-get install postgresql")


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def proc_status(pid, field):
    """A field of /proc/PID/status (e.g. VmRSS in kB) as an int, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def children(pid):
    """Pids of the live (non-zombie) children of `pid`."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[1]) == pid and rest[0] != "Z":
            out.append(int(d))
    return sorted(out)


def tcp_sockets():
    """The TCP sockets of the machine from /proc/net/tcp and tcp6:
    {inode (str): (local port, remote port, state)}, state as the kernel's two
    hex digits ("01" established, "0A" listening)."""
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    out[cols[9]] = (int(cols[1].rsplit(":", 1)[1], 16),
                                    int(cols[2].rsplit(":", 1)[1], 16), cols[3])
        except OSError:
            pass
    return out


def _die_with_parent():
    """In the child before exec: get SIGKILL when the test process dies, so
    that a killed test leaves no tgring behind."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def tail(path, n=40):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(lines[-n:])


def cleanup_stale():
    """Removes temporary directories of earlier runs whose owner is gone,
    stopping the PostgreSQL they started (only a postmaster whose command line
    names that directory)."""
    for d in glob.glob(os.path.join(tempfile.gettempdir(), TMP_PREFIX + "*")):
        try:
            with open(os.path.join(d, OWNER_FILE)) as f:
                owner = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if pid_alive(owner):
            continue
        for pidfile in glob.glob(os.path.join(d, "*", "postmaster.pid")):
            try:
                with open(pidfile) as f:
                    pm = int(f.readline().strip())
                with open(f"/proc/{pm}/cmdline", "rb") as f:
                    cmd = f.read().decode("utf-8", "replace")
                if d in cmd:
                    os.kill(pm, signal.SIGQUIT)
                    for _ in range(50):
                        if not pid_alive(pm):
                            break
                        time.sleep(0.1)
                    if pid_alive(pm):
                        os.kill(pm, signal.SIGKILL)
            except (OSError, ValueError):
                pass
        shutil.rmtree(d, ignore_errors=True)


# ---- PostgreSQL ------------------------------------------------------------------


class Postgres:
    """A throwaway cluster in its own temporary directory: a Unix socket in
    that directory and 127.0.0.1 on a free port, fsync on. Trust auth; with
    `password`, TCP connections (tgring's) must give it (scram-sha-256) and
    url() carries it, while psql() keeps using the socket without one."""

    def __init__(self, harness, name="pg", password=None):
        self.h = harness
        self.password = password
        self.bindir = pg_bindir()
        self.dir = harness.mkdtemp(name)
        self.data = os.path.join(self.dir, "data")
        self.sockdir = self.dir
        self.logfile = os.path.join(self.dir, "postgres.log")
        self.port = None
        self.running = False
        if is_root():
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        auth = ["-A", "trust"]
        if password:
            harness.sweep.add("database password", password)
            pwfile = os.path.join(self.dir, "pwfile")
            with open(pwfile, "w") as f:
                f.write(password + "\n")
            if is_root():
                os.chown(pwfile, pw.pw_uid, pw.pw_gid)
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile", pwfile]
        try:
            self._as_pg([os.path.join(self.bindir, "initdb"), "-D", self.data, *auth,
                         "-U", "postgres", "-E", "UTF8", "--no-sync", "--no-instructions"],
                        timeout=120)
        finally:
            if password:
                os.unlink(pwfile)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# test cluster\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.sockdir}'\n"
                    "fsync = on\n"
                    "synchronous_commit = on\n"
                    "shared_buffers = 32MB\n"
                    "max_connections = 200\n"
                    "logging_collector = off\n")

    def _as_pg(self, argv, timeout=60, check=True):
        if is_root():
            argv = ["runuser", "-u", "postgres", "--"] + argv
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout, cwd="/")
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout}{p.stderr}"
                               f"\n--- postgres log ---\n{tail(self.logfile)}")
        return p

    def start(self, port=None):
        """Starts the cluster (pg_ctl -w). Without `port`: the port it had
        before, or a free one (retried if someone took it meanwhile)."""
        tries = 1 if (port or self.port) else 4
        for attempt in range(tries):
            p = port or self.port or free_port()
            r = self._as_pg([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l",
                             self.logfile, "-w", "-t", "60", "-o", f"-p {p}", "start"],
                            check=False, timeout=90)
            if r.returncode == 0:
                self.port = p
                self.running = True
                return
            if attempt == tries - 1:
                raise RuntimeError(f"pg_ctl start failed:\n{r.stdout}{r.stderr}\n"
                                   f"--- postgres log ---\n{tail(self.logfile)}")

    def stop(self, mode="fast"):
        if not self.running:
            return
        self._as_pg([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", mode, "-w",
                     "-t", "60", "stop"], check=False, timeout=90)
        self.running = False

    def cleanup(self):
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, db="tgring", password=None):
        """A URI for tgring over TCP, with `password` (default: the
        cluster's) percent-encoded."""
        password = password or self.password
        cred = "postgres" + (f":{urllib.parse.quote(password, safe='')}" if password else "")
        return f"postgresql://{cred}@127.0.0.1:{self.port}/{db}"

    def psql(self, sql, db="tgring", check=True):
        """Runs `sql`; returns the rows as lists of strings (NULL is '')."""
        argv = ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-F", "\x1f",
                "-h", self.sockdir, "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql]
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=120)
        if p.returncode != 0:
            if check:
                raise RuntimeError(f"psql failed: {sql}\n{p.stderr}")
            return None
        return [line.split("\x1f") for line in p.stdout.splitlines() if line != ""]

    def scalar(self, sql, db="tgring"):
        rows = self.psql(sql, db)
        return rows[0][0] if rows else None

    def plans(self, sql, before="", db="tgring"):
        """Runs `before`, then `sql` under auto_explain, in one session; returns
        the plans auto_explain gave of every statement `sql` ran, those inside
        functions too (its notices)."""
        explain = ("LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; "
                   "SET auto_explain.log_nested_statements = on; "
                   "SET auto_explain.log_level = notice; ")
        argv = ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.sockdir,
                "-p", str(self.port), "-U", "postgres", "-d", db, "-c", before + explain + sql]
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"psql failed: {sql}\n{p.stderr}")
        return p.stderr

    def hot_updates(self, sql, table, db="tgring"):
        """Runs `sql` in a transaction of its own; returns how many rows of
        `table` it updated and how many of those updates were HOT (the new
        version in the old one's page, no index entry), from the
        transaction's own statistics."""
        row = self.psql(f"BEGIN; {sql}; SELECT pg_stat_get_xact_tuples_updated('{table}'::regclass), "
                        f"pg_stat_get_xact_tuples_hot_updated('{table}'::regclass); COMMIT;", db)
        return int(row[-1][0]), int(row[-1][1])

    def _locking_session(self, sql, held, what, db):
        """A session that has run `sql` (opening a transaction), returned once
        the query `held` counts something; unlock(session) ends it."""
        session = subprocess.Popen(
            ["psql", "-X", "-q", "-h", self.sockdir, "-p", str(self.port), "-U", "postgres",
             "-d", db], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, text=True)
        session.stdin.write(sql + "\n")
        session.stdin.flush()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.scalar(held, db) != "0":
                return session
            time.sleep(0.05)
        self.unlock(session)
        raise RuntimeError(f"could not lock {what}")

    def lock_table(self, table, db="tgring"):
        """Opens a session that holds an ACCESS EXCLUSIVE lock on `table` and
        returns once the lock is granted; unlock(session) ends it."""
        return self._locking_session(
            f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;",
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = "
            f"l.relation WHERE c.relname = '{table}' AND l.granted AND "
            "l.mode = 'AccessExclusiveLock'", table, db)

    def lock_rows(self, table, where, db="tgring"):
        """Opens a session that holds the rows of `table` matching `where`
        FOR UPDATE and returns once it does; unlock(session) ends it."""
        return self._locking_session(
            f"BEGIN; SELECT 'tgring-test-lock' FROM {table} WHERE {where} FOR UPDATE;",
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
            "AND query LIKE '%tgring-test-lock%' AND pid <> pg_backend_pid()",
            f"rows of {table}", db)

    @staticmethod
    def unlock(session):
        try:
            session.stdin.write("COMMIT;\n")
            session.stdin.close()
        except OSError:
            pass
        try:
            session.wait(30)
        except subprocess.TimeoutExpired:
            session.kill()

    def createdb(self, name="tgring"):
        self.psql(f'CREATE DATABASE "{name}"', db="postgres")


# ---- tgring ----------------------------------------------------------------------


class StartError(Exception):
    pass


class Tgring:
    """One tgring process with its stderr in a file."""

    def __init__(self, harness, env, args=("serve",), name="tgring", extra_asan=None,
                 nofile=None):
        self.h = harness
        self.args = list(args)
        self.name = name
        self.env = env
        self.extra_asan = extra_asan
        self.nofile = nofile  # (soft, hard) RLIMIT_NOFILE to start with, or None
        self.proc = None
        self.port = None
        self.logfile = None
        self.returncode = None

    def _env(self):
        env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        env.update(sanitizer_env(self.extra_asan))
        env.update(self.env)
        return env

    def start(self, wait=True, timeout=30):
        """Starts it on a free port (unless TGRING_LISTEN is given) and waits
        for /health/live. Retries on another port if the first was taken."""
        fixed = "TGRING_LISTEN" in self.env
        for attempt in range(1 if fixed else 4):
            if not fixed:
                self.port = free_port()
                self.env = dict(self.env, TGRING_LISTEN=f"127.0.0.1:{self.port}")
            else:
                self.port = int(self.env["TGRING_LISTEN"].rsplit(":", 1)[1])
            self.logfile = self.h.logpath(f"{self.name}-{attempt}.log")
            self.h.logs.append((self.name, self.logfile))
            env = self._env()
            self.h.sweep.add_env(env)
            with open(self.logfile, "wb") as err:
                self.proc = subprocess.Popen([BIN] + self.args, env=env,
                                             stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                             cwd=self.h.workdir, preexec_fn=self._preexec)
            self.h.procs.append(self)
            if not wait:
                return self
            try:
                self.wait_live(timeout)
                return self
            except StartError:
                if self.proc.poll() is not None and not fixed and attempt < 3 and \
                        re.search(r"in use|EADDRINUSE", self.log()):
                    continue
                raise
        return self

    def _preexec(self):
        _die_with_parent()
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    @property
    def pid(self):
        return self.proc.pid

    def wait_live(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError(f"{self.name} exited with {self.proc.returncode} before "
                                 f"/health/live answered:\n{self.tail()}")
            try:
                if http_get(self.port, "/health/live", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise StartError(f"{self.name}: /health/live not 200 within {timeout} s:\n{self.tail()}")

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = http_get(self.port, "/health/ready", timeout=1)[0]
                if last == 200:
                    return True
            except OSError as e:
                last = repr(e)
            time.sleep(0.05)
        return False

    def signal(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout):
        """Exit code, or None if still running after `timeout` s."""
        try:
            self.returncode = self.proc.wait(timeout)
            return self.returncode
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=15):
        """SIGTERM and wait; SIGKILL past `timeout`. Returns the exit code
        (negative: killed by that signal; None: had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.proc.kill()
            self.proc.wait()
        return rc

    def log(self):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def tail(self, n=40):
        return tail(self.logfile, n)

    def metrics(self):
        status, _, body = http_get(self.port, "/metrics", timeout=5)
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return parse_metrics(body.decode())


def http_get(port, path, timeout=5, host="127.0.0.1"):
    """Blocking GET on a new connection: (status, headers dict lowercased, body)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        headers, body = r.getheaders(), r.read()
    finally:
        c.close()
    where = f"the {r.status} answer to GET {path} from port {port}"
    capture(f"{where} (head)", "".join(f"{k}: {v}\n" for k, v in headers), port)
    capture(f"{where} (body)", body, port)
    return r.status, {k.lower(): v for k, v in headers}, body


def parse_metrics(text):
    """Prometheus text -> {(name, ((label, value), ...)): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)', line)
        if not m:
            continue
        labels = tuple(sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                         m.group(3) or "")))
        try:
            out[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            pass
    return out


def metric(metrics, name, **labels):
    """Sum of the series `name` whose labels include `labels`; None if none."""
    total = None
    want = set(labels.items())
    for (n, ls), v in metrics.items():
        if n == name and want <= set(ls):
            total = (total or 0) + v
    return total


# ---- raw HTTP/1.1 client -------------------------------------------------------


class ConnectionClosed(Exception):
    """The peer closed (or reset) the connection before a whole response."""


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name lowercased, value)]
        self.body = body

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def __repr__(self):
        return f"<Response {self.status} {self.headers!r} {self.body[:200]!r}>"


def build_request(method, path, body=b"", headers=None, host="127.0.0.1"):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    hdrs = dict(headers or {})
    if body or method in ("POST", "PUT"):
        hdrs.setdefault("Content-Length", str(len(body)))
    for k, v in hdrs.items():
        if v is not None:
            lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class HttpConn:
    """One client connection; requests are sequential on it (keep-alive)."""

    def __init__(self, reader, writer, port):
        self.reader = reader
        self.writer = writer
        self.port = port
        self.closed = False
        self.last_request = "a request"  # for the sweep's "where"

    @classmethod
    async def open(cls, port, host="127.0.0.1", timeout=5):
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 20),
                                      timeout)
        return cls(r, w, port)

    async def send(self, data):
        line = data[:data.find(b"\r\n")] if b"\r\n" in data[:200] else b""
        if re.match(rb"^[A-Za-z]+ \S+ HTTP/", line):
            self.last_request = line.rsplit(b" ", 1)[0].decode("latin-1")
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError) as e:
            self.closed = True
            raise ConnectionClosed(f"send: {e!r}") from e

    async def read_response(self, timeout=10):
        return await asyncio.wait_for(self._read_response(), timeout)

    async def _read_response(self):
        while True:
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as e:
                self.closed = True
                raise ConnectionClosed(f"EOF after {len(e.partial)} bytes of a head: "
                                       f"{e.partial[:200]!r}") from None
            except (ConnectionError, OSError) as e:
                self.closed = True
                raise ConnectionClosed(f"recv: {e!r}") from e
            lines = head.decode("latin-1").split("\r\n")
            m = re.match(r"^HTTP/1\.[01] (\d{3}) ?(.*)$", lines[0])
            if not m:
                raise ValueError(f"bad status line {lines[0]!r}")
            status = int(m.group(1))
            headers = []
            for line in lines[1:]:
                if line:
                    k, _, v = line.partition(":")
                    headers.append((k.strip().lower(), v.strip()))
            where = f"the {status} answer to {self.last_request} from port {self.port}"
            capture(f"{where} (head)", head, self.port)
            if 100 <= status < 200:
                continue
            resp = Response(status, m.group(2), headers, b"")
            try:
                te = resp.header("transfer-encoding")
                cl = resp.header("content-length")
                if te and "chunked" in te.lower():
                    resp.body = await self._read_chunked()
                elif cl is not None:
                    resp.body = await self.reader.readexactly(int(cl))
                elif status in (204, 304):
                    pass
                else:
                    resp.body = await self.reader.read()
                    self.closed = True
            except asyncio.IncompleteReadError as e:
                self.closed = True
                raise ConnectionClosed(f"EOF in the body of a {status}: {e.partial[:200]!r}")
            except (ConnectionError, OSError) as e:
                self.closed = True
                raise ConnectionClosed(f"recv body: {e!r}") from e
            capture(f"{where} (body)", resp.body, self.port)
            conn = (resp.header("connection") or "").lower()
            if "close" in conn:
                self.closed = True
            return resp

    async def _read_chunked(self):
        body = b""
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return body
            body += await self.reader.readexactly(size)
            await self.reader.readexactly(2)

    async def request(self, method, path, body=b"", headers=None, timeout=10):
        await self.send(build_request(method, path, body, headers))
        return await self.read_response(timeout)

    async def wait_closed(self, timeout=3):
        """True if the peer closes (EOF or reset) within `timeout` s with no
        further bytes; False on a timeout or if bytes arrive."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except asyncio.TimeoutError:
            return False
        except (ConnectionError, OSError):
            self.closed = True
            return True
        if data == b"":
            self.closed = True
            return True
        capture(f"bytes read from port {self.port} after {self.last_request}", data, self.port)
        return False

    async def read_to_eof(self, timeout=3):
        """Reads until the peer closes: (True, bytes read) if it closed within
        `timeout` s, (False, bytes read so far) otherwise."""
        closed, data = await self._read_to_eof(timeout)
        capture(f"bytes read from port {self.port} after {self.last_request}", data, self.port)
        return closed, data

    async def _read_to_eof(self, timeout):
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, data
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except asyncio.TimeoutError:
                return False, data
            except (ConnectionError, OSError):
                self.closed = True
                return True, data
            if chunk == b"":
                self.closed = True
                return True, data
            data += chunk

    def close(self):
        self.closed = True
        try:
            self.writer.close()
        except Exception:
            pass


class Poster:
    """Posts updates on one keep-alive connection, reconnecting after the
    server closed it. Each post returns (outcome, response, seconds): outcome
    is the status code or one of 'refused', 'closed', 'timeout'."""

    def __init__(self, port, path, secret):
        self.port = port
        self.path = path
        self.secret = secret
        self.conn = None
        self.opens = 0  # connections opened so far

    async def post(self, body, timeout=10, secret=None):
        t0 = time.monotonic()
        try:
            if self.conn is None or self.conn.closed:
                if self.conn:
                    self.conn.close()
                self.opens += 1
                self.conn = await HttpConn.open(self.port, timeout=timeout)
            resp = await self.conn.request(
                "POST", self.path, body,
                {"Content-Type": "application/json",
                 "X-Telegram-Bot-Api-Secret-Token": secret or self.secret}, timeout=timeout)
            return resp.status, resp, time.monotonic() - t0
        except (ConnectionRefusedError,) as e:
            self._drop()
            return "refused", e, time.monotonic() - t0
        except asyncio.TimeoutError as e:
            self._drop()
            return "timeout", e, time.monotonic() - t0
        except (ConnectionClosed, ConnectionError, OSError) as e:
            self._drop()
            return "closed", e, time.monotonic() - t0

    def _drop(self):
        if self.conn:
            self.conn.close()
        self.conn = None

    def close(self):
        self._drop()


# ---- updates ---------------------------------------------------------------------

TEXTS = ["/start", "hello", "Привет, мир", "日本語のテキスト", "emoji \U0001F680\U0001F525",
         "quote \" and backslash \\ and tab\t", "a longer message " * 8, "line1\nline2"]


def make_update(update_id, kind="message", chat_id=None, from_id=None, text="hello",
                rng=random):
    """A realistic update, compact JSON with update_id first, UTF-8 unescaped.
    Returns (body bytes, expected (type, chat_id, from_id))."""
    chat_id = chat_id if chat_id is not None else rng.randrange(1, 2**40)
    from_id = from_id if from_id is not None else rng.randrange(1, 2**40)
    date = 1700000000 + update_id % 100000
    user = {"id": from_id, "is_bot": False, "first_name": "Test", "username": f"u{from_id}",
            "language_code": "en"}
    if chat_id < 0:
        chat = {"id": chat_id, "title": "Group chat", "type": "supergroup"}
    else:
        chat = {"id": chat_id, "first_name": "Test", "username": f"u{chat_id}", "type": "private"}
    msg = {"message_id": update_id % 100000 + 1, "from": user, "chat": chat, "date": date,
           "text": text}
    exp_from = from_id
    if kind == "message":
        payload = msg
    elif kind == "edited_message":
        payload = dict(msg, edit_date=date + 5)
    elif kind == "channel_post":
        payload = {"message_id": msg["message_id"], "sender_chat": chat,
                   "chat": dict(chat, type="channel"), "date": date, "text": text}
        exp_from = None
    elif kind == "callback_query":
        payload = {"id": str(update_id * 7919), "from": user, "message": msg,
                   "chat_instance": str(chat_id * 31), "data": "btn:1"}
    elif kind == "poll_answer":
        payload = {"poll_id": str(update_id), "user": user, "option_ids": [0]}
        chat_id = None
    else:
        raise ValueError(kind)
    body = json.dumps({"update_id": update_id, kind: payload}, ensure_ascii=False,
                      separators=(",", ":")).encode()
    return body, (kind, chat_id, exp_from)


# ---- the harness -----------------------------------------------------------------


class Harness:
    def __init__(self, name):
        self.name = name
        self.t = Tap()
        self.procs = []
        self.pgs = []
        self.logs = []      # (name, path) of every tgring process and command
        self.sweep = Sweep(self.logs)
        Sweep.current = self.sweep
        self.workdir = None
        self.closed = False
        cleanup_stale()
        self.workdir = self.mkdtemp(name)

    def mkdtemp(self, what):
        d = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{self.name}-{what}-")
        with open(os.path.join(d, OWNER_FILE), "w") as f:
            f.write(str(os.getpid()))
        os.chmod(d, 0o755)
        return d

    def logpath(self, name):
        base = os.path.join(self.workdir, name)
        path, i = base, 1
        while os.path.exists(path):
            i += 1
            path = f"{base}.{i}"
        return path

    # -- resources

    def postgres(self, db="tgring", password=None):
        """A started cluster with database `db` created (not migrated); with
        `password`, tgring must log in with it (see Postgres), and the
        password is a secret the sweep looks for."""
        pg = Postgres(self, f"pg{len(self.pgs)}", password)
        self.pgs.append(pg)
        pg.start()
        if db:
            pg.createdb(db)
        return pg

    def tgring(self, env, args=("serve",), name=None, wait=True, extra_asan=None, nofile=None):
        name = name or f"tgring-{'-'.join(args)}{len(self.procs)}"
        return Tgring(self, env, args, name, extra_asan, nofile).start(wait=wait)

    def run(self, args, env, timeout=60, name=None):
        """Runs `tgring args...` to completion: (exit code, stdout, stderr);
        the exit code is None if it was killed after `timeout` s."""
        name = name or "cmd-" + "-".join(a.strip("-") for a in args if a) or "cmd"
        full = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        full.update(sanitizer_env())
        full.update(env)
        self.sweep.add_env(full)
        try:
            p = subprocess.run([BIN] + list(args), env=full, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout, cwd=self.workdir)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            # Killed: report it as no exit code, with whatever it printed.
            rc, out, err = None, e.stdout or b"", e.stderr or b""
        out = out.decode("utf-8", "replace")
        err = err.decode("utf-8", "replace")
        path = self.logpath(name + ".log")
        with open(path, "w") as f:
            f.write(err)
        self.logs.append((name, path))
        self.sweep.capture(f"the stdout of {name}", out)
        return rc, out, err

    def migrate(self, url):
        rc, out, err = self.run(["migrate"], {"DATABASE_URL": url})
        if rc != 0:
            raise RuntimeError(f"tgring migrate exited {rc}:\n{out}{err}")

    def serve_env(self, pg, secret=None, **extra):
        env = {"DATABASE_URL": pg.url(), "TELEGRAM_WEBHOOK_SECRET": secret or random_secret()}
        env.update({k: str(v) for k, v in extra.items()})
        return env

    # -- end of test

    def close(self):
        if self.closed:
            return
        self.closed = True
        for p in self.procs:
            try:
                p.stop(timeout=10)
            except Exception as e:
                self.t.diag(f"stopping {p.name}: {e!r}")
        reports = []
        for name, path in self.logs:
            text = ""
            try:
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                pass
            lines = text.splitlines()
            bad = [i for i, ln in enumerate(lines) if SANITIZER_RE.search(ln)]
            if bad:
                start = max(0, bad[0] - 5)
                reports.append(f"--- {name} ({path}) ---\n" + "\n".join(lines[start:start + 80]))
        self.t.ok(not reports, f"no sanitizer report from any of the {len(self.logs)} tgring runs",
                  "\n".join(reports))
        self.sweep.report(self.t)
        if self.t.failed:
            for p in self.procs:
                self.t.diag(f"--- last lines of {p.name} (pid {p.proc.pid if p.proc else '-'}, "
                            f"exit {p.proc.returncode if p.proc else '-'}) ---")
                self.t.diag(p.tail(40))
            for pg in self.pgs:
                self.t.diag(f"--- last lines of {pg.logfile} ---")
                self.t.diag(tail(pg.logfile, 15))
        for pg in self.pgs:
            try:
                pg.cleanup()
            except Exception as e:
                self.t.diag(f"stopping PostgreSQL: {e!r}")
        if self.workdir and os.environ.get("TGRING_KEEP_LOGS") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)
        elif self.workdir:
            self.t.diag(f"logs kept in {self.workdir}")


def random_secret(n=32):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    return "".join(random.choice(alphabet) for _ in range(n))


def random_password():
    """A database password that a URL must percent-encode ('@', '/', '%', ':'),
    so that the sweep looks for it both as given and encoded."""
    return f"pw-{random_secret(14)}@/%:{random_secret(14)}"


def _raise_exit(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run(main, name=None):
    """Runs `async def main(h)` with a fresh Harness, then cleans up and exits
    with the TAP result."""
    name = name or os.path.splitext(os.path.basename(sys.argv[0]))[0].replace("test_", "")
    if not os.access(BIN, os.X_OK):
        print(f"1..0 # SKIP tgring binary not found at {BIN}")
        sys.exit(77)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)
    h = Harness(name)
    atexit.register(h.close)
    t0 = time.monotonic()
    try:
        asyncio.run(main(h))
    except BaseException as e:  # report and clean up even on Ctrl-C or a kill
        h.t.ok(False, f"test body finished without an exception ({type(e).__name__})",
               traceback.format_exc())
    finally:
        h.close()
    h.t.diag(f"{name}: {time.monotonic() - t0:.1f} s")
    sys.exit(h.t.finish())
