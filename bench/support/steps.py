"""Steps measured each in its own process: peak RSS, the child's JSON line, growth exponents."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def proc_kb(field: str) -> int:
    """A `/proc/self/status` figure in kB: `VmRSS` (now) or `VmHWM` (the peak so far)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def run_child(script: str, step: str, *argv: str) -> dict:
    """Run `python script --child step *argv`; -> the JSON object on its last stdout line."""
    out = subprocess.run(
        [sys.executable, script, "--child", step, *argv],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if out.returncode != 0:
        raise RuntimeError(f"{step} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def exponent(a: float, b: float, n_a: float, n_b: float) -> float | None:
    """Growth exponent between two shapes: log(b / a) / log(n_b / n_a); None if a figure is not > 0
    or the shapes are the same size (one shape)."""
    if a <= 0 or b <= 0 or n_a == n_b:
        return None
    return round(math.log(b / a) / math.log(n_b / n_a), 3)


def fit_exponent(sizes: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope of log(value) on log(size); None with fewer than two positive points."""
    pairs = [(math.log(n), math.log(v)) for n, v in zip(sizes, values, strict=True) if n > 0 and v > 0]
    if len({x for x, _ in pairs}) < 2:
        return None
    mx = sum(x for x, _ in pairs) / len(pairs)
    my = sum(y for _, y in pairs) / len(pairs)
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    return round(sum((x - mx) * (y - my) for x, y in pairs) / sxx, 3)
