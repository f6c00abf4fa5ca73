"""Where the instrument's own files are.

Run from a checkout (the supported install: a venv with the checkout
installed in editable mode), orchestras/ and config/ are beside the package.
A wheel carries copies of them in appliance/_data/ (see pyproject.toml).
"""

from __future__ import annotations

import errno
import os
import stat
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


def systemd_dir() -> Path:
    return _data("systemd")


def project_root() -> Path | None:
    """The checkout this package runs from, if it runs from one."""
    root = _PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() else None


def _may_write(directory: Path) -> bool:
    """True if this process can write in directory, or create it."""
    while not directory.exists():
        directory = directory.parent
    return os.access(directory, os.W_OK | os.X_OK)


def default_socket() -> Path:
    """/run/appliance/control.sock for the service; a per-user place otherwise."""
    system = Path("/run/appliance")
    if _may_write(system):
        return system / "control.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "appliance" / "control.sock"
    # not /tmp: another local user could take that name first and keep this one out
    private = default_state_dir() / "control.sock"
    if len(str(private)) < 100:           # a Unix socket's path has room for 107 bytes
        return private
    return Path(f"/tmp/appliance-{os.getuid()}") / "control.sock"


def client_socket() -> Path:
    """Where the command-line client looks: the service's socket if it is there."""
    system = Path("/run/appliance/control.sock")
    return system if system.exists() else default_socket()


def default_state_dir() -> Path:
    """/var/lib/appliance for the service; ~/.local/state/appliance otherwise."""
    system = Path("/var/lib/appliance")
    if _may_write(system):
        return system
    base = os.environ.get("XDG_STATE_HOME")
    return (Path(base) if base else Path.home() / ".local" / "state") / "appliance"


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or OSError saying why not.

    A config or an orchestra can name anything: /dev/zero would be read for
    ever and a FIFO would block the start.  Open without blocking, look at
    what it is, and read no more than the limit.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit // 1024} KiB", str(path))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:                      # it grew while we read
        raise OSError(errno.EFBIG, f"larger than {limit // 1024} KiB", str(path))
    return data
