"""Zeroconf (mDNS / DNS-SD): the box tells the LAN what it serves, as norns does, so a
phone's OSC app or a browser finds it by name ("_osc._udp", "_http._tcp").

python-zeroconf runs its own thread; registering probes the LAN for about a
second and a half, so it is done on a thread of ours and the sound never waits
for it.  A service bound to one address is announced on that address; one
bound to all (0.0.0.0) on every IPv4 address the box has.
"""

from __future__ import annotations

import logging
import socket
import threading

from appliance.engine.rtprio import start_thread

log = logging.getLogger("appliance")


class Announcer:
    def __init__(self, name: str, services: list[tuple[str, str, int]]) -> None:
        """services: (type such as "_osc._udp", host it listens on, port)."""
        self.name = name
        self.services = services
        self._zeroconf = None
        self._infos: list = []
        self._lock = threading.Lock()
        self._closed = False
        self.announced: list[str] = []
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = start_thread("zeroconf", self._register)

    def _register(self) -> None:
        try:
            from zeroconf import IPVersion, ServiceInfo, Zeroconf

            zeroconf = Zeroconf(ip_version=IPVersion.V4Only)
            with self._lock:
                if self._closed:
                    zeroconf.close()
                    return
                self._zeroconf = zeroconf
            host = socket.gethostname().split(".")[0] or "appliance"
            for kind, listen_host, port in self.services:
                found = addresses(listen_host)
                info = ServiceInfo(f"{kind}.local.", f"{self.name}.{kind}.local.", port=port,
                                   addresses=[socket.inet_aton(a) for a in found], server=f"{host}.local.",
                                   properties={"path": "/"} if kind == "_http._tcp" else {})
                zeroconf.register_service(info, allow_name_change=True)
                with self._lock:
                    if self._closed:
                        return
                    self._infos.append(info)
                    self.announced.append(f"{kind} {port} on {', '.join(found)}")
            log.info("announced on the LAN (zeroconf): %s", "; ".join(self.announced))
        except Exception as exc:
            self.error = str(exc)
            log.warning("zeroconf: cannot announce the box on the LAN: %s", exc)

    def close(self) -> None:
        """Say goodbye on the LAN (zeroconf's close unregisters every service)."""
        with self._lock:
            self._closed = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            zeroconf, self._zeroconf, self._infos = self._zeroconf, None, []
        if zeroconf is not None:
            zeroconf.close()


def addresses(listen_host: str) -> list[str]:
    """The IPv4 addresses a service on `listen_host` is reached at."""
    if listen_host not in ("0.0.0.0", "", "::"):
        return [listen_host]
    import ifaddr

    found = [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips
             if isinstance(ip.ip, str) and not ip.ip.startswith("169.254.")]
    public = [a for a in found if not a.startswith("127.")]
    return public or found
