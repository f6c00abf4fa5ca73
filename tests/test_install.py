"""The systemd unit, install and uninstall, and check-config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.service import install

ROOT = Path(__file__).resolve().parents[1]


def appliance(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_the_unit_has_what_the_box_needs():
    unit = install.render_unit("appliance", Path("/opt/appliance"), ["audio", "gpio"])
    for line in ("Type=notify", "WatchdogSec=10", "Restart=always", "LimitRTPRIO=95", "LimitMEMLOCK=infinity",
                 "User=appliance", "SupplementaryGroups=audio gpio", "ProtectSystem=strict",
                 "StateDirectory=appliance", "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes",
                 "ExecReload=/bin/kill -HUP $MAINPID",
                 "ExecStart=/opt/appliance/bin/appliance run --config /etc/appliance/appliance.toml "
                 "--state-dir /var/lib/appliance --socket /run/appliance/control.sock"):
        assert line in unit.splitlines()
    assert "@" not in unit.replace("%N", "")
    without_groups = install.render_unit("appliance", Path("/opt/appliance"), [])
    assert "SupplementaryGroups" not in without_groups


def test_the_unit_allows_ip_only_for_a_link_session(tmp_path):
    """Link multicasts over UDP: the unit forbids IP unless the installed config plays in a session."""
    closed = install.render_unit("appliance", Path("/opt/appliance"), [])
    assert "RestrictAddressFamilies=AF_UNIX AF_NETLINK" in closed.splitlines()
    opened = install.render_unit("appliance", Path("/opt/appliance"), [], network=True)
    assert "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6" in opened.splitlines()
    config = tmp_path / "appliance.toml"
    config.write_text("[clock]\nsync = 'link'\n")
    assert install._wants_network(config)
    config.write_text("[clock]\nsync = 'midi'\n")
    assert not install._wants_network(config)
    config.write_text("[clock]\nsync = 'lnk'\n")              # a broken config: closed, `run` says why
    assert not install._wants_network(config)
    config.write_text("[web]\nlisten = '0.0.0.0:8080'\n")      # the web page: opened only when it listens
    assert "web page" in install._wants_network(config)
    config.write_text("[web]\nlisten = ''\n")
    assert not install._wants_network(config)


def test_install_verify_and_uninstall_under_a_root(tmp_path):
    root = tmp_path / "root"
    done = appliance("install", "--root", str(root), "--name", "appliance-test")
    assert done.returncode == 0, done.stderr
    unit = root / "etc/systemd/system/appliance-test.service"
    config = root / "etc/appliance-test/appliance.toml"
    binary = root / "opt/appliance-test/bin/appliance"
    assert unit.is_file() and config.is_file() and binary.is_file()
    # the installed copy runs on its own, with its own orchestra and config files
    python = root / "opt/appliance-test/bin/python"
    checked = subprocess.run([str(python), "-m", "appliance", "check-config", str(config)], capture_output=True,
                             text=True, timeout=60, cwd=tmp_path)     # not the checkout's package
    assert checked.returncode == 0, checked.stderr
    assert "/opt/appliance-test/" in checked.stdout and "_data/orchestras/default.orc" in checked.stdout
    # made for the box's paths, not the staging directory's, on a Python the unit can see
    scripts = [p for p in (root / "opt/appliance-test/bin").iterdir() if p.is_file() and not p.is_symlink()]
    assert binary.read_text().startswith("#!/opt/appliance-test/bin/python")
    assert not any(str(root).encode() in p.read_bytes() for p in scripts)
    home = (root / "opt/appliance-test/pyvenv.cfg").read_text()
    assert "home = /root" not in home and "home = /home" not in home
    _run_where_the_box_has_it(root, config)
    # systemd accepts the unit as written (pointed at the copy under our root, which is where it is)
    check = tmp_path / "appliance-test.service"
    check.write_text(unit.read_text().replace("/opt/appliance-test", str(root / "opt" / "appliance-test")))
    verify = subprocess.run(["systemd-analyze", "verify", str(check)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr == ""
    # installing again keeps the config the owner edited
    config.write_text(config.read_text() + "\n# mine\n")
    again = appliance("install", "--root", str(root), "--name", "appliance-test")
    assert again.returncode == 0 and "kept the existing" in again.stdout
    assert config.read_text().endswith("# mine\n")
    removed = appliance("uninstall", "--root", str(root), "--name", "appliance-test")
    assert removed.returncode == 0, removed.stderr
    assert not unit.exists() and not binary.exists() and config.exists()
    purged = appliance("uninstall", "--root", str(root), "--name", "appliance-test", "--purge")
    assert purged.returncode == 0 and not config.exists()


def _run_where_the_box_has_it(root: Path, config: Path) -> None:
    """With the staging prefix gone (the tree moved to /opt, as on the box), the installed
    command runs and plays."""
    import os
    import shutil

    box_path = Path("/opt/appliance-test")
    if os.geteuid() != 0 or box_path.exists():
        return                                     # needs root, and an /opt/appliance-test that is ours
    shutil.copytree(root / "opt/appliance-test", box_path, symlinks=True)
    try:
        out = root / "take.wav"
        done = subprocess.run([str(box_path / "bin/appliance"), "render", "--seconds", "1", "--out", str(out),
                               "--config", str(config)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert out.stat().st_size > 48000 * 6 * 0.9
    finally:
        shutil.rmtree(box_path)


@pytest.mark.parametrize("text,expected", [
    ("[audio]\nksmps = 64\nbuffer = = 3\n", ":3: TOML syntax:"),
    ("[audio]\nbakend = 'alsa'\n", ":2: audio.bakend: unknown key; did you mean 'backend'?"),
    ("[[midi.map]]\ncc = 300\nparam = 'tempo'\n", ":2: midi.map[0].cc: must be within 0..127, got 300"),
    ("[[midi.map]]\ncc = 3\nparam = 'tempp'\n",
     ":3: midi.map[0].param: unknown parameter 'tempp'; did you mean 'tempo'?"),
    ("[[midi.map]]\ncc = 3\nparam = 'tempo'\nmin = 10\n",
     ":4: midi.map[0].min: tempo must be within 20..300 BPM, got 10"),
    ("[[midi.map]]\nnote = 3\nparam = 'tempo'\n", ":3: midi.map[0].param: a note can trigger an action"),
    ("[[midi.map]]\ncc = 3\ncc14 = 4\naction = 'click'\n", ":1: midi.map[0]: needs exactly one source"),
    ("[[gpio.encoder]]\nname = 'a'\npins = [17, 17]\nparam = 'tempo'\n", ":3: gpio.encoder[0].pins: needs pins"),
    ("[[gpio.button]]\nname = 'b'\npin = 4\naction = 'explode'\n", ":4: gpio.button[0].action: must be one of"),
    ("[[gpio.button]]\nname = 'b'\npin = 4\naction = 'click'\n[[gpio.encoder]]\nname = 'e'\npins = [4, 5]\n"
     "param = 'tempo'\n", ":1: gpio.button[0]: pin 4 is already used by encoder 'e'"),
    ("\x00\x01binary", ": TOML syntax:"),
    ("a = [" * 500, ": TOML syntax:"),
])
def test_check_config_names_the_line_and_key(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    done = appliance("check-config", str(path), timeout=60)
    assert done.returncode != 0
    assert expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_check_config_reports_every_error_at_once(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[audio]\nksmps = 'x'\nsample_rat = 1\n[params]\ntempo = 1000\n[[midi.map]]\ncc = -1\n"
                    "param = 'tempo'\n")
    done = appliance("check-config", str(path), timeout=60)
    assert done.returncode != 0
    assert done.stderr.count("error:") == 4


def test_check_config_compiles_the_orchestra(tmp_path):
    orchestra = tmp_path / "mine.orc"
    orchestra.write_text("instr Click\nendin\ninstr Lead\n  k1 = = 1\nendin\n")
    path = tmp_path / "cfg.toml"
    path.write_text(f"[engine]\norchestra = '{orchestra}'\n")
    done = appliance("check-config", str(path), timeout=60)
    assert done.returncode != 0
    assert f"{orchestra}:4: " in done.stderr
    good = appliance("check-config", str(ROOT / "config" / "appliance.toml"), timeout=60)
    assert good.returncode == 0 and ": OK (" in good.stdout
