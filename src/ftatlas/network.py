"""Network rules shared by everything that sends or serves over HTTP (judge client, serve, ui)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether ``host`` stays on this machine (localhost or a loopback address): where a key may travel or a
    server may listen without extra protection."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
