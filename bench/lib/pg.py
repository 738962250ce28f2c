# SPDX-License-Identifier: MIT
"""A throwaway PostgreSQL cluster for bench/run: durable (fsync, synchronous_commit
and full_page_writes on), WAL I/O timed (track_wal_io_timing), on 127.0.0.1."""

import glob
import os
import shutil
import signal
import subprocess
import time

from measure import children, tree_cpu_s


class Postgres:
    def __init__(self, tmp, port):
        self.bin = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                          key=lambda p: int(p.split("/")[-2]))[-1]
        self.dir, self.port = f"{tmp}/pg", port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/tgring"
        self.started = False
        for d in ("pg", "sock"):
            os.makedirs(f"{tmp}/{d}", exist_ok=True)
            shutil.chown(f"{tmp}/{d}", "postgres")
        self.sock = f"{tmp}/sock"
        self.log = f"{tmp}/pg/postgres.log"

    def _as_pg(self, *args, **kw):
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)

    def start(self):
        self._as_pg(f"{self.bin}/initdb", "-D", self.dir, "-U", "postgres", "-A", "trust",
                    "-E", "UTF8", "--no-sync", "--no-instructions")
        with open(f"{self.dir}/postgresql.conf", "a") as f:
            f.write(f"""
# bench/run: durable, as in production; WAL flush time recorded (pg_stat_wal).
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.sock}'
max_connections = 300
fsync = on
synchronous_commit = on
full_page_writes = on
track_wal_io_timing = on
""")
        self._as_pg(f"{self.bin}/pg_ctl", "-D", self.dir, "-l", self.log, "-w", "start")
        self.started = True
        self.sql("CREATE DATABASE tgring", db="postgres")

    def sql(self, query, db="tgring"):
        r = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                            "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
                            "-c", query], check=True, stdout=subprocess.PIPE, text=True)
        return r.stdout.strip()

    def postmaster(self):
        with open(f"{self.dir}/postmaster.pid") as f:
            return int(f.readline())

    def cpu_s(self):
        """CPU seconds of the postmaster, its live backends and those it reaped."""
        return tree_cpu_s(self.postmaster())

    def wal(self):
        """pg_stat_wal's flush count and flush/write times (ms); the checkpoints begun
        (pg_stat_bgwriter) and the autovacuum and autoanalyze runs done (pg_stat_all_tables),
        which a stall in a run's timeline may line up with."""
        row = self.sql("SELECT wal_sync, wal_sync_time, wal_write_time, wal_bytes, "
                       "(SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter), "
                       "(SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) "
                       "FROM pg_stat_all_tables) FROM pg_stat_wal")
        n, sync_ms, write_ms, nbytes, ckpt, autovac = row.split("\t")
        return {"wal_sync": int(n), "wal_sync_ms": float(sync_ms),
                "wal_write_ms": float(write_ms), "wal_bytes": int(nbytes),
                "checkpoints": int(ckpt), "autovacuums": int(autovac)}

    def version(self):
        return self.sql("SHOW server_version")

    def non_default_settings(self):
        return self.sql("SELECT name || ' = ' || setting FROM pg_settings "
                        "WHERE source NOT IN ('default', 'override') ORDER BY name").splitlines()

    def signal_all(self, sig):
        """sig to the postmaster and every child (SIGSTOP freezes the whole server)."""
        pm = self.postmaster()
        pids = children(pm) + [pm] if sig == signal.SIGSTOP else [pm] + children(pm)
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass

    def stop(self):
        if not self.started:
            return
        self.signal_all(signal.SIGCONT)
        subprocess.run(["runuser", "-u", "postgres", "--", f"{self.bin}/pg_ctl", "-D", self.dir,
                        "-m", "immediate", "-w", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.started = False

    def fsync_floor(self, seconds=1.0):
        """Our own probe: 8 kB write + fdatasync in a loop in the cluster's directory."""
        path = f"{self.dir}/fsync-probe"
        lat = []
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            block = b"\0" * 8192
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                t = time.monotonic()
                os.pwrite(fd, block, 0)
                os.fdatasync(fd)
                lat.append((time.monotonic() - t) * 1e6)
        finally:
            os.close(fd)
            os.unlink(path)
        lat.sort()
        return {"n": len(lat), "p50_us": round(lat[len(lat) // 2], 1),
                "p99_us": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1)}

    def pg_test_fsync(self, out):
        """pg_test_fsync (about 15 s); the fdatasync line's µs per operation."""
        path = f"{self.dir}/fsync.test"
        r = subprocess.run([f"{self.bin}/pg_test_fsync", "-s", "1", "-f", path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with open(out, "w") as f:
            f.write(r.stdout)
        for line in r.stdout.splitlines():
            p = line.split()
            if p and p[0] == "fdatasync" and len(p) >= 3:
                try:
                    return float(p[-2])
                except ValueError:
                    pass
        return None
