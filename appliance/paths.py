"""Where the instrument's own files are.

Run from a checkout (the supported install: a venv with the checkout
installed in editable mode), orchestras/ and config/ are beside the package.
A wheel carries copies of them in appliance/_data/ (see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _data(name: str) -> Path:
    packaged = _PACKAGE / "_data" / name
    return packaged if packaged.is_dir() else _PACKAGE.parent / name


def orchestras() -> Path:
    return _data("orchestras")


def config_dir() -> Path:
    return _data("config")


def default_orchestra() -> Path:
    return orchestras() / "default.orc"
