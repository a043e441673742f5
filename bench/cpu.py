"""CPU seconds used by process trees (Linux /proc), to report CPU per request: a figure that
a noisy neighbour slows down far less than it slows down a rate."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process, with those of its children that ended
    and were reaped by it (so a PostgreSQL backend's CPU stays counted after it exits)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # after "pid (comm) ": state ppid ... utime stime cutime cstime (fields 14-17 of stat)
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / _TICK


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds of `root` and each of its live descendants, by pid."""
    table: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found:
                table[int(entry.name)] = found
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[int, float] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out[pid] = table[pid][1]
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_seconds(root: int) -> float:
    return sum(tree_cpu(root).values())


def used_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used by the tree meanwhile: ended processes live on in their parent's figure."""
    return max(0.0, sum(after.values()) - sum(before.values()))


def postmaster_pid(data_dir: Path) -> int | None:
    """The embedded server's postmaster (first line of postmaster.pid), if any."""
    try:
        return int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class CpuMeter:
    """CPU seconds used by the server and PostgreSQL between `start()` and `stop()`."""

    def __init__(self, server_pid: int | None, postgres_pid: int | None) -> None:
        self.pids = {"server": server_pid, "postgres": postgres_pid}
        self.before: dict[str, dict[int, float]] = {}

    def start(self) -> None:
        self.before = {k: tree_cpu(p) for k, p in self.pids.items() if p}

    def stop(self, requests: int) -> dict[str, float]:
        """CPU milliseconds per request, by side."""
        out: dict[str, float] = {}
        for name, before in self.before.items():
            pid = self.pids[name]
            assert pid is not None
            used = used_between(before, tree_cpu(pid))
            out[f"{name}_cpu_ms_per_request"] = round(used * 1000 / requests, 3) if requests else 0
        return out
