"""The last lines logged, kept in memory for the `logs` command."""

from __future__ import annotations

import logging
from collections import deque


class LogRing(logging.Handler):
    def __init__(self, size: int = 1000) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def last(self, count: int) -> list[str]:
        return list(self.lines)[-count:]
