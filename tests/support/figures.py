"""One summary line of figures per soak test, in one format, so runs can be compared.

    figures = SoakFigures("test_crash[soak]", kills=8)
    figures.requests += 1 ...
    figures.add_invariants(check_invariants(database_url))
    figures.print()
    # SOAK test_crash[soak] requests=5210 5xx=0 invariant_violations=0 ... kills=8 seconds=71.3

The line is printed whatever the outcome (print it before asserting), and always starts with
`SOAK `, so `make soak | grep '^SOAK '` collects the figures of a run.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.invariants import LOCATION_CHECKS, SCHEMA_ENFORCED


@dataclass
class SoakFigures:
    test: str
    requests: int = 0  # every HTTP request sent, retries and replays included
    status_5xx: int = 0
    oversold_units: int = 0  # 0 by the schema's CHECK constraint: not evidence, shown apart
    invariant_violations: int = 0  # of the checks a wrong write could fail (not the schema's)
    counters_not_lines: int = 0  # products' and orders' unit counters against their lines
    on_hand_not_ledger: int = 0  # products' on_hand against the sum of their ledger
    lost_writes: int = 0  # 2xx answers whose effect is not in the database
    duplicated_writes: int = 0  # effects found more than once
    kills: int | None = None  # SIGKILLs of the server (crash tests only)
    extra: dict[str, Any] = field(default_factory=dict)  # test-specific figures, appended
    started: float = field(default_factory=time.monotonic)

    def add_invariants(self, checked: dict[str, Any]) -> None:
        """Take the oversold units and the violation count from `check_invariants`."""
        self.oversold_units = int(checked["oversold_units"])
        self.invariant_violations = int(checked["evidence_violations"])
        v = checked["violations"]
        self.counters_not_lines = int(v["counters_not_lines"] + v["order_status_not_lines"])
        self.on_hand_not_ledger = int(v["on_hand_not_ledger"] + v["level_on_hand_not_ledger"])
        # The per-location checks apart too (also counted in invariant_violations), and how
        # much they had to look at: a soak line with locations=1 tested no network.
        self.extra["location_violations"] = sum(
            n for name, n in v.items() if name in LOCATION_CHECKS and name not in SCHEMA_ENFORCED
        )
        self.extra["stocked_locations"] = int(checked["stocked_locations"])
        self.extra["transfers"] = int(checked["transfers"])
        self.oversold_units += int(checked["oversold_units_at_locations"])
        self.extra["schema_enforced_violations"] = int(
            checked["violation_total"] - checked["evidence_violations"]
        )

    def line(self) -> str:
        parts = [
            f"requests={self.requests}",
            f"5xx={self.status_5xx}",
            f"invariant_violations={self.invariant_violations}",
            f"counters_not_lines={self.counters_not_lines}",
            f"on_hand_not_ledger={self.on_hand_not_ledger}",
            f"lost_writes={self.lost_writes}",
            f"duplicated_writes={self.duplicated_writes}",
        ]
        if self.kills is not None:
            parts.append(f"kills={self.kills}")
        parts += [f"{k}={v}" for k, v in self.extra.items()]
        parts.append(f"oversold_units={self.oversold_units}")
        parts.append(f"seconds={time.monotonic() - self.started:.1f}")
        return f"SOAK {self.test} " + " ".join(parts)

    def print(self) -> None:
        print("\n" + self.line(), flush=True)


def soak_seed(default: int) -> int:
    """The seed of a soak run: `default`, or BACKORDER_SOAK_SEED (a number, or `random` for a
    fresh one). Printed, so that a failing run is replayed with BACKORDER_SOAK_SEED=<seed>."""
    chosen = os.environ.get("BACKORDER_SOAK_SEED", "")
    if chosen == "random":
        seed = secrets.randbelow(2**31)
    elif chosen:
        seed = int(chosen)
    else:
        seed = default
    print(f"\nSOAK-SEED {seed} (replay: BACKORDER_SOAK_SEED={seed})", flush=True)
    return seed


def soak_size(full: int, least: int = 1) -> int:
    """A soak run's size: `full`, scaled by BACKORDER_SOAK_SCALE (e.g. 0.25 for CI's medium
    soak), at least `least`."""
    scale = float(os.environ.get("BACKORDER_SOAK_SCALE", "1"))
    return max(least, round(full * scale))
