"""`appliance install` and `appliance uninstall`: the instrument as a boot service.

install (as root, from a checkout):
  1. a virtual environment in /opt/NAME with this package (not the
     checkout's editable one: the service user cannot read a home directory);
  2. a system user NAME in the groups audio and gpio (where they exist);
  3. /etc/NAME/appliance.toml, the factory config, unless one is there;
  4. /etc/systemd/system/NAME.service from systemd/appliance.service;
  5. systemctl daemon-reload and enable --now.
uninstall undoes 1, 4 and 5; with --purge also 2, 3 and the state in /var/lib/NAME.

With --root DIR everything is written under DIR and the user and systemctl
steps are left out (for images and tests).  The tree is made for the box's
own paths: its scripts name /opt/NAME/bin/python, not DIR/opt/NAME, and the
venv is built on the system's Python (/usr/bin/python3), which the unit can
see (ProtectHome= hides a Python under /root or /home).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from appliance import paths
from appliance.config import schema
from appliance.errors import ApplianceError

GROUPS = ("audio", "gpio")


def install(root: Path, name: str) -> list[str]:
    live = _check(root)
    done = []
    prefix = root / "opt" / name
    source = paths.project_root()
    if source is None:
        raise ApplianceError("install runs from a checkout (it installs that checkout into /opt)")
    python = _interpreter()
    _run([python, "-m", "venv", "--clear", str(prefix)])
    # PYPI=1: where lgpio has no wheel and is built, its C library goes in (see bootstrap)
    _run([str(prefix / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)], env={"PYPI": "1"})
    target = Path("/opt") / name
    if prefix != target:
        _relocate(prefix, target)
    done.append(f"installed the package into {prefix} (Python {python})")
    if python.startswith(("/root/", "/home/")):
        done.append(f"warning: {python} is under a home directory, which the service cannot see; "
                    "install Debian's python3 (apt-get install python3-venv) and install again")
    groups = [g for g in GROUPS if _group_exists(g)]
    if live:
        if not _user_exists(name):
            _run(["useradd", "--system", "--user-group", "--home-dir", f"/var/lib/{name}", "--no-create-home",
                  "--shell", "/usr/sbin/nologin", name])
            done.append(f"created the system user {name}")
        if groups:
            _run(["usermod", "--append", "--groups", ",".join(groups), name])
    config = root / "etc" / name / "appliance.toml"
    if config.exists():
        done.append(f"kept the existing {config}")
    else:
        config.parent.mkdir(parents=True, exist_ok=True)
        factory = (paths.config_dir() / "appliance.toml").read_text()
        if "\n[osc]" not in factory:
            factory += BOX_OSC                # on the box, OSC and the web page listen on the LAN
        if "\n[web]" not in factory:
            factory += BOX_WEB
        config.write_text(factory)
        config.chmod(0o644)
        done.append(f"wrote the factory config to {config}")
    network = _wants_network(config)
    if network:
        done.append(f"the config {network}: the unit allows IPv4 and IPv6")
    unit = unit_path(root, name)
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(render_unit(name, Path("/opt") / name, groups, bool(network)))
    unit.chmod(0o644)
    done.append(f"wrote {unit}")
    if live:
        _run(["systemctl", "daemon-reload"])
        _run(["systemctl", "enable", "--now", f"{name}.service"])
        done.append(f"enabled and started {name}.service (journalctl -u {name} -f to follow it)")
    return done


def uninstall(root: Path, name: str, purge: bool) -> list[str]:
    live = _check(root)
    done = []
    unit = unit_path(root, name)
    if live and unit.exists():
        subprocess.run(["systemctl", "disable", "--now", f"{name}.service"], check=False)
        done.append(f"stopped and disabled {name}.service")
    if unit.exists():
        unit.unlink()
        done.append(f"removed {unit}")
        if live:
            _run(["systemctl", "daemon-reload"])
    prefix = root / "opt" / name
    if prefix.exists():
        shutil.rmtree(prefix)
        done.append(f"removed {prefix}")
    if purge:
        for directory in (root / "etc" / name, root / "var" / "lib" / name):
            if directory.exists():
                shutil.rmtree(directory)
                done.append(f"removed {directory}")
        if live and _user_exists(name):
            _run(["userdel", name])
            done.append(f"removed the user {name}")
    else:
        done.append(f"kept {root / 'etc' / name} and {root / 'var' / 'lib' / name} (--purge removes them)")
    return done


def _interpreter() -> str:
    """Debian's Python for the service's venv when there is one, else the one running this."""
    system = Path("/usr/bin/python3")
    if system.exists():
        return str(system)
    return getattr(sys, "_base_executable", sys.executable)


def _relocate(staged: Path, target: Path) -> None:
    """Make a venv built in `staged` right for where the box will have it: `target`."""
    old, new = str(staged).encode(), str(target).encode()
    for script in (staged / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        text = script.read_bytes()
        if old in text and b"\0" not in text:        # scripts and activate files, not binaries
            script.write_bytes(text.replace(old, new))


def unit_path(root: Path, name: str) -> Path:
    return root / "etc" / "systemd" / "system" / f"{name}.service"


def render_unit(name: str, prefix: Path, groups: list[str], network: bool = False) -> str:
    """The unit for this box; `network`: it may open IPv4 and IPv6 sockets (Ableton Link, OSC, the web page)."""
    template = (paths.systemd_dir() / "appliance.service").read_text()
    unit = template.replace("@NAME@", name).replace("@PREFIX@", str(prefix))
    unit = unit.replace("@NETWORK@", " AF_INET AF_INET6" if network else "")
    if groups:
        return unit.replace("@GROUPS@", " ".join(groups))
    return "\n".join(line for line in unit.splitlines() if "@GROUPS@" not in line) + "\n"


BOX_OSC = """
[osc]
# OSC over UDP from the LAN (TouchOSC, Max, norns): /param/<name> <value>, /param/<name>/norm <0..1>,
# /transport/start|stop, /tap, /scene/recall <name>, /status.  "" turns it off; "127.0.0.1:10111"
# keeps it on the box.
listen = "0.0.0.0:10111"
"""

BOX_WEB = """
[web]
# The web page on the LAN: every parameter, presets, scenes, MIDI learn, logs, recordings.  Every
# request needs the token (`appliance web-url` prints the URL with it).  "" turns it off;
# "127.0.0.1:8080" keeps it on the box (reach it with ssh -L 8080:127.0.0.1:8080).
listen = "0.0.0.0:8080"
"""


def _wants_network(config: Path) -> str:
    """What in the installed config needs IP ("" nothing; unreadable: nothing, `run` says why)."""
    try:
        loaded = schema.load(config)
    except ApplianceError:
        return ""
    wants = (["plays in an Ableton Link session (UDP multicast)"] if loaded.sync == "link" else []) + \
            ([f"listens for OSC on {loaded.osc.listen}"] if loaded.osc.listen else []) + \
            ([f"serves the web page on {loaded.web.listen}"] if loaded.web.listen else [])
    return " and ".join(wants)


def _check(root: Path) -> bool:
    """True when installing into the running system (user and systemctl steps too)."""
    live = root.resolve() == Path("/")
    if live and os.geteuid() != 0:
        raise ApplianceError("install and uninstall need root: sudo .venv/bin/appliance install")
    return live


def _run(command: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env} if env else None)
    if done.returncode != 0:
        raise ApplianceError(f"{' '.join(command)} failed: {done.stderr.strip() or done.stdout.strip()}")


def _user_exists(name: str) -> bool:
    return _known(pwd.getpwnam, name)


def _group_exists(name: str) -> bool:
    return _known(grp.getgrnam, name)


def _known(lookup: Callable[[str], object], name: str) -> bool:
    try:
        lookup(name)
        return True
    except KeyError:
        return False
