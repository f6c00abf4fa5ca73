"""Zeroconf announcements, in a network namespace with only the loopback (mDNS multicasts)."""

from __future__ import annotations

import socket
import time

from tests.netns import inside


def test_the_box_announces_its_osc_service_and_says_goodbye(request):
    if not inside(request):
        return
    from zeroconf import IPVersion, Zeroconf

    from appliance.remote.announce import Announcer

    announcer = Announcer("test box", [("_osc._udp", "127.0.0.1", 10111)])
    announcer.start()
    browser = Zeroconf(ip_version=IPVersion.V4Only)
    try:
        info = browser.get_service_info("_osc._udp.local.", "test box._osc._udp.local.", timeout=8000)
        assert info is not None and info.port == 10111
        assert [socket.inet_ntoa(a) for a in info.addresses] == ["127.0.0.1"]
        deadline = time.monotonic() + 10             # registering returns after its announcements
        while not announcer.announced and time.monotonic() < deadline:
            time.sleep(0.05)
        assert announcer.announced == ["_osc._udp 10111 on 127.0.0.1"] and announcer.error is None
    finally:
        announcer.close()
        browser.close()
    fresh = Zeroconf(ip_version=IPVersion.V4Only)
    try:
        assert fresh.get_service_info("_osc._udp.local.", "test box._osc._udp.local.", timeout=1500) is None
    finally:
        fresh.close()


def test_the_service_announces_osc_and_its_web_page_on_the_lan(request, tmp_path):
    """The installed box's way: both listen on every address (here, in a namespace that has only
    the loopback) and are announced as _osc._udp and _http._tcp, the page with its path."""
    if not inside(request):
        return
    import json

    from zeroconf import IPVersion, ServiceBrowser, Zeroconf

    from tests.test_service import GOOD_CONFIG, Box

    box = Box(tmp_path, config=GOOD_CONFIG + '[osc]\nlisten = "0.0.0.0:0"\n[web]\nlisten = "0.0.0.0:0"\n')
    browser = Zeroconf(ip_version=IPVersion.V4Only)
    try:
        status = json.loads(box.ok("status", "--json"))
        web_port = int(status["web"]["listen"].rsplit(":", 1)[1])
        osc_port = int(status["osc"]["listen"].rsplit(":", 1)[1])
        found: dict[str, str] = {}
        ServiceBrowser(browser, ["_http._tcp.local.", "_osc._udp.local."],
                       handlers=[lambda zeroconf, service_type, name, state_change: found.setdefault(service_type,
                                                                                                   name)])
        deadline = time.monotonic() + 15
        while len(found) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        web = browser.get_service_info("_http._tcp.local.", found["_http._tcp.local."], timeout=5000)
        osc = browser.get_service_info("_osc._udp.local.", found["_osc._udp.local."], timeout=5000)
        assert web is not None and web.port == web_port and web.properties == {b"path": b"/"}
        assert osc is not None and osc.port == osc_port
        assert "127.0.0.1" in [socket.inet_ntoa(a) for a in web.addresses]
        url = box.ok("web-url").splitlines()
        assert url[0].endswith(f".local:{web_port}/?token={(box.state / 'web-token').read_text().strip()}")
    finally:
        browser.close()
        box.stop()
