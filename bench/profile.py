"""py-spy profiles of the server under a bench scenario: `BENCH_PYSPY=<dir>` makes every
measured load of `python -m bench.run` record the server's process tree (both workers) with
py-spy, and this module turns the recordings into the top functions by own and total time.

    BENCH_PYSPY=bench/profiles/raw .venv/bin/python -m bench.run --only 3
    .venv/bin/python -m bench.profile bench/profiles/raw/3-*.txt > bench/profiles/read.txt

Sampling costs the server some CPU: rates of a profiled run are not comparable with a plain
run's; the share of each function is what a profile tells.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

RATE_HZ = 250
# py-spy's first frames name the processes (a command line may hold ";"): not functions.
_PROCESSES = re.compile(r'process \d+:"[^"]*";?')


class Recording:
    """py-spy recording the process tree of `pid` into `<dir>/<label>.txt` (collapsed stacks,
    idle stacks left out: the profile is where the CPU goes), when BENCH_PYSPY is set."""

    def __init__(self, pid: int | None, label: str) -> None:
        directory = os.environ.get("BENCH_PYSPY")
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.proc: subprocess.Popen[bytes] | None = None
        if not directory or pid is None or not Path(spy).exists():
            return
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.output = Path(directory) / f"{label}.txt"
        cmd = [spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking"]
        cmd += ["--rate", str(RATE_HZ), "--format", "raw", "--output", str(self.output)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches to every process of the tree before the load starts

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        self.proc.wait(timeout=60)


def _frame_name(frame: str) -> str:
    """`handle (starlette/routing.py:123)` -> `handle (starlette/routing.py)`."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def summarise(files: list[Path], top: int = 40) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for file in files:
        for line in file.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_frame_name(f) for f in _PROCESSES.sub("", stack).split(";") if f]
            if not frames:
                continue
            samples += count
            own[frames[-1]] += count
            for name in set(frames):
                total[name] += count
            packages[_package(frames[-1])] += count
    out = [f"{samples} samples (CPU only, both workers) from {', '.join(f.name for f in files)}"]
    out.append("\nown time by package (the leaf frame's)")
    out += [f"{n / samples:6.1%}  {name}" for name, n in packages.most_common(top)]
    out.append("\nown time by function")
    out += [f"{n / samples:6.1%}  {name}" for name, n in own.most_common(top)]
    out.append("\ntotal time by function (in the stack)")
    out += [f"{n / samples:6.1%}  {name}" for name, n in total.most_common(top + 20)]
    return "\n".join(out) + "\n"


def _package(frame: str) -> str:
    path = frame.rpartition(" (")[2].rstrip(")")
    first = path.split("/", 1)[0]
    return first.removesuffix(".py") if "/" in path else path


if __name__ == "__main__":
    sys.stdout.write(summarise([Path(a) for a in sys.argv[1:]]))
