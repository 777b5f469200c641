"""usagewatch benchmark suite (`make bench`, or `python -m bench.run [scenario ...]`).

Scenarios run the real sources and pipeline against the vendor simulators (tests/simulators) over
HTTP on loopback, with the latency and rate limits of the issue, and compare what they measure with
the bound those limits allow. Results go to bench/results.json; docs/performance.md quotes them.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / "shared"

# `make bench` sets PYTHONPATH; a bare `python -m bench.run` (and every spawned child) gets it here.
for _path in (str(SHARED), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)
