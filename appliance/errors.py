"""Every error the instrument raises on purpose.

One base class, so a caller can catch "anything the instrument refused";
each error also subclasses the matching builtin, so ``except ValueError``
keeps working for code that does not know this module.
"""

from __future__ import annotations


class ApplianceError(Exception):
    """Base of all errors raised by the instrument."""


class Problem:
    """One thing wrong in a file: where it is and what is wrong.

    (A plain class, not a dataclass: this module is imported by every
    command-line verb, and dataclasses costs the quick ones 8 ms at start.)
    """

    __slots__ = ("key", "line", "message", "path")

    def __init__(self, path: str, line: int | None, key: str | None, message: str) -> None:
        self.path, self.line, self.key, self.message = path, line, key, message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"Problem({self.path!r}, {self.line!r}, {self.key!r}, {self.message!r})"

    def _fields(self) -> tuple:
        return (self.path, self.line, self.key, self.message)

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(ApplianceError, ValueError):
    """A configuration or scenario file is wrong; holds every problem found."""

    MAX_PROBLEMS = 50         # a hostile file must not print megabytes: the first ones say enough

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems[: self.MAX_PROBLEMS])
        if len(problems) > self.MAX_PROBLEMS:
            first = problems[0]
            self.problems.append(Problem(first.path, None, None,
                                         f"... and {len(problems) - self.MAX_PROBLEMS} more problems"))
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


class GpioError(ApplianceError, RuntimeError):
    """The board's GPIO cannot be used."""


class EngineError(ApplianceError, RuntimeError):
    """Csound could not be started or stopped as asked."""
