"""The embedded PostgreSQL trusts every local connection, so nobody but the service (and
root) may reach its socket, whatever the data directory's path; and starting it changes no
directory but its own."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from backorder import embedded

NOBODY = 65534

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root: the test connects as another local user (`nobody`)",
)


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory anyone may pass through (as /tmp/… and a data directory's parents are)."""
    path = Path(tempfile.mkdtemp(prefix="bo-sec-"))
    path.chmod(0o755)
    yield path
    for pidfile in path.rglob("postmaster.pid"):
        pgdata = pidfile.parent
        pg_ctl = embedded._bin_dir(pgdata) / "pg_ctl"
        subprocess.run(
            [str(pg_ctl), "-D", str(pgdata), "stop", "-m", "immediate"],
            user="pgserver",
            group="pgserver",
            extra_groups=[],
            cwd="/",
            capture_output=True,
            check=False,
        )
    shutil.rmtree(path, ignore_errors=True)


def psql_as(uid: int | None, socket_dir: Path, pgdata: Path) -> subprocess.CompletedProcess[str]:
    """`psql -h <socket dir> -U postgres` as user `uid` (None: this process's user)."""
    return subprocess.run(
        [str(embedded._bin_dir(pgdata) / "psql"), "-h", str(socket_dir), "-U", "postgres",
         "-d", "postgres", "-Atc", "SELECT count(*) FROM pg_authid"],
        user=uid,
        group=uid,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip


def modes(path: Path) -> dict[Path, int]:
    return {p: stat.S_IMODE(p.stat().st_mode) for p in [path, *path.parents]}


@pytest.mark.parametrize(
    "name",
    ["short", "x" * 90 + "/data"],
    ids=["socket-in-the-data-directory", "path-too-long-for-a-socket"],
)
def test_another_local_user_cannot_connect_to_the_embedded_database(base: Path, name: str) -> None:
    data_dir = base / name
    db = embedded.start(data_dir, exclusive=False)
    try:
        pgdata = data_dir / "pgdata"
        socket_dir = db.server.socket_dir
        assert (socket_dir / embedded.SOCKET_NAME).is_socket()
        # The service (root here) connects: the door exists and psql can use it.
        with psycopg.connect(db.url.replace("+psycopg", "")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        ours = psql_as(None, socket_dir, pgdata)
        assert ours.returncode == 0, ours.stderr

        theirs = psql_as(NOBODY, socket_dir, pgdata)
        assert theirs.returncode != 0, f"nobody connected as superuser: {theirs.stdout}"
        assert "Permission denied" in theirs.stderr, theirs.stderr

        # Nothing to reach over TCP either, and the socket's directory is the server's alone.
        pid_lines = (pgdata / "postmaster.pid").read_text().splitlines()
        assert pid_lines[5].strip() == "", f"listening on TCP: {pid_lines[5]!r}"
        assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(pgdata.stat().st_mode) == 0o700
        assert stat.S_IMODE(data_dir.stat().st_mode) & 0o007 == 0
    finally:
        db.stop()
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()


def test_starting_the_embedded_database_never_widens_an_ancestors_mode(base: Path) -> None:
    reachable = base / "open" / "data"
    (base / "open").mkdir(mode=0o750)
    (base / "open").chmod(0o751)  # passable, not listable, by others
    before = modes(base / "open")
    db = embedded.start(reachable, exclusive=False)
    db.stop()
    assert modes(base / "open") == before


def passes_as(uid: int, directory: Path) -> bool:
    """Whether user `uid` may pass through `directory` (the kernel's own answer)."""
    probe = subprocess.run(
        ["/bin/sh", "-c", f"cd {directory}"], user=uid, group=uid, extra_groups=[], cwd="/",
        capture_output=True, check=False,
    )  # fmt: skip
    return probe.returncode == 0


def test_behind_a_private_ancestor_only_the_server_user_is_let_through(base: Path) -> None:
    """Run as root with the data under a directory only root may enter (`/root`, pytest's
    `/tmp/pytest-of-root`): the server's user alone is let through, by one ACL entry; nobody
    else gains anything, and the database stays private."""
    private = base / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    server_user = pwd.getpwnam("pgserver")
    db = embedded.start(private / "data", exclusive=False)
    try:
        assert passes_as(server_user.pw_uid, private)
        assert not passes_as(NOBODY, private)
        st = private.stat()
        assert stat.S_IMODE(st.st_mode) & 0o707 == 0o700  # owner and others as they were
        refused = psql_as(NOBODY, db.server.socket_dir, db.server.pgdata)
        assert refused.returncode != 0
    finally:
        db.stop()


def test_a_server_found_with_an_open_socket_is_refused_by_commands_and_restarted_by_serve(
    base: Path,
) -> None:
    """What a data directory started by the old code looks like: its socket in a directory
    anyone may enter. `migrate` refuses to use it; `serve` restarts it privately."""
    data_dir = base / "old"
    db = embedded.start(data_dir, exclusive=False)
    pgdata = data_dir / "pgdata"
    db.server.stop()
    exposed = Path(tempfile.mkdtemp(prefix="bo-open-"))
    shutil.chown(exposed, "pgserver", "pgserver")
    exposed.chmod(0o777)
    try:
        started = subprocess.run(
            [str(embedded._bin_dir(pgdata) / "pg_ctl"), "-D", str(pgdata), "-w", "-l",
             str(pgdata / "log"), "-o", f"-c listen_addresses='' -k {exposed}", "start"],
            user="pgserver", group="pgserver", extra_groups=[], cwd="/", capture_output=True,
            text=True, check=False,
        )  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr
        assert psql_as(NOBODY, exposed, pgdata).returncode == 0  # what the old code allowed

        with pytest.raises(embedded.EmbeddedUnsafe, match="other users can reach it"):
            embedded.start(data_dir, exclusive=False)

        again = embedded.start(data_dir, exclusive=True)
        try:
            assert again.started_here
            assert again.server.socket_dir != exposed
            assert psql_as(NOBODY, again.server.socket_dir, pgdata).returncode != 0
        finally:
            again.stop()
    finally:
        shutil.rmtree(exposed, ignore_errors=True)
