"""Figures the benchmarks share."""

from __future__ import annotations

import numpy as np


def ms_stats(seconds: list[float]) -> dict:
    """Count, median, 99th percentile and worst of durations given in seconds, in ms."""
    if not seconds:
        return {"count": 0}
    ms = np.array(seconds) * 1000
    return {"count": len(ms), "p50": round(float(np.percentile(ms, 50)), 3),
            "p99": round(float(np.percentile(ms, 99)), 3), "max": round(float(ms.max()), 3)}
