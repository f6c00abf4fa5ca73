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
