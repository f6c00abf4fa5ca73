"""Reading TOML files so that every error can name its file, line and key.

tomllib gives the line of a syntax error but not the line of a key, so
KeyLines indexes where each key is written.  It understands what our files
use: [table], [[array.of.tables]], key = value and one-line inline tables.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import paths
from appliance.errors import ConfigError, Problem

MAX_BYTES = 256 * 1024      # a config or a scenario is a few KiB; a larger file is a mistake or an attack

_AT_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")
_ARRAY_TABLE = re.compile(r"^\s*\[\[\s*([^\]]+?)\s*\]\]")
_TABLE = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-.]+)\s*=""")
_INLINE_KEY = re.compile(r"""[{,]\s*("[^"]*"|[A-Za-z0-9_\-]+)\s*=""")


@dataclass
class KeyLines:
    """Line numbers of the keys of a TOML text, by dotted path ("event[2].set.tempo")."""

    lines: dict[str, int] = field(default_factory=dict)

    @classmethod
    def index(cls, text: str) -> KeyLines:
        found: dict[str, int] = {}
        counts: dict[str, int] = {}
        table = ""
        for number, raw in enumerate(text.splitlines(), start=1):
            line = _strip_comment(raw)
            if m := _ARRAY_TABLE.match(line):
                name = _unquote(m.group(1))
                counts[name] = counts.get(name, 0) + 1
                table = f"{name}[{counts[name] - 1}]"
                found.setdefault(table, number)
            elif m := _TABLE.match(line):
                table = _unquote(m.group(1))
                found.setdefault(table, number)
            elif m := _KEY.match(line):
                key = _join(table, _unquote(m.group(1)))
                found.setdefault(key, number)
                brace = line.find("{", m.end())
                if brace >= 0:
                    for inner in _INLINE_KEY.finditer(line, brace):
                        found.setdefault(_join(key, _unquote(inner.group(1))), number)
        return cls(found)

    def line_of(self, path: str) -> int | None:
        """The line of a key, or of the nearest enclosing key or table found."""
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None


@dataclass
class TomlFile:
    """A parsed TOML file and where its keys are."""

    path: Path
    data: dict[str, Any]
    keys: KeyLines

    @classmethod
    def read(cls, path: Path) -> TomlFile:
        try:
            text = paths.read_regular(path, MAX_BYTES).decode("utf-8")
        except FileNotFoundError:
            raise ConfigError([Problem(str(path), None, None, "no such file")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigError([Problem(str(path), None, None, f"cannot read: {why}")]) from None
        return cls.parse(text, path)

    @classmethod
    def parse(cls, text: str, path: Path) -> TomlFile:
        try:
            data = tomllib.loads(text)
        except RecursionError:
            raise ConfigError([Problem(str(path), None, None, "TOML nested too deeply")]) from None
        except ValueError as exc:            # tomllib's own errors, and numbers too long to convert
            if not isinstance(exc, tomllib.TOMLDecodeError):
                raise ConfigError([Problem(str(path), None, None, f"TOML value refused: {exc}")]) from None
            message = str(exc)
            at = _AT_LINE.search(message)
            line = int(at.group(1)) if at else None
            message = _AT_LINE.sub("", message).strip()
            raise ConfigError([Problem(str(path), line, None, f"TOML syntax: {message}")]) from None
        return cls(path, data, KeyLines.index(text))

    def problem(self, key: str, message: str) -> Problem:
        return Problem(str(self.path), self.keys.line_of(key), key, message)


def _join(table: str, key: str) -> str:
    return f"{table}.{key}" if table else key


def _unquote(name: str) -> str:
    parts = [p.strip().strip("\"'") for p in name.split(".")]
    return ".".join(parts)


def _strip_comment(line: str) -> str:
    """The line without a trailing # comment (a # inside quotes is kept)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[:i]
    return line
