"""Every error the instrument raises on purpose.

One base class, so a caller can catch "anything the instrument refused";
each error also subclasses the matching builtin, so ``except ValueError``
keeps working for code that does not know this module.
"""

from __future__ import annotations

from dataclasses import dataclass


class ApplianceError(Exception):
    """Base of all errors raised by the instrument."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file: where it is and what is wrong."""

    path: str
    line: int | None
    key: str | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(ApplianceError, ValueError):
    """A configuration or scenario file is wrong; holds every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ParamError(ApplianceError, ValueError):
    """A parameter name is unknown or a value is refused."""


class OrchestraError(ApplianceError, RuntimeError):
    """An orchestra does not compile or lacks an instrument the generator needs."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {message}")


class EngineError(ApplianceError, RuntimeError):
    """Csound could not be started or stopped as asked."""
