"""Joining a running Ray cluster (``runtime=ray_cluster``) without hanging on a dead address.

``ray.init(address=...)`` retries a GCS that is not there for minutes, and it reports
the address after rewriting a loopback host to the machine's routable one. So before
calling it, ``join`` opens one TCP connection to the address exactly as given (a few
seconds at most) and, when nothing answers, fails with one line naming that address.
"""
from __future__ import annotations

import socket

#: seconds to wait for the cluster's port to accept a connection
PROBE_TIMEOUT_S = 5.0


def host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port``, ``[v6]:port`` or ``ray://host:port``; None for ``auto``.

    ValueError names an address that is none of these.
    """
    rest = address.strip()
    if rest == "auto":
        return None
    rest = rest.split("://", 1)[1] if "://" in rest else rest
    host, sep, port = rest.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"runtime.address={address!r} is not host:port (e.g. 10.0.0.1:6379)")
    return host, int(port)


def probe(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Return if ``address`` accepts a TCP connection; ConnectionError naming it otherwise."""
    try:
        target = host_port(address)
    except ValueError as ex:
        raise ConnectionError(str(ex)) from None
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout_s):
            return
    except socket.timeout:
        why = f"no answer within {timeout_s:g} s"
    except OSError as ex:
        why = ex.strerror or type(ex).__name__
    raise ConnectionError(f"no Ray cluster answers at runtime.address={address} ({why}); start one "
                          f"(e.g. launch/local_cluster.sh start) or pass the address it prints")


def join(address: str, **init_kwargs) -> None:
    """``ray.init(address=address, ...)`` once ``probe`` found something listening there."""
    probe(address)
    import ray
    ray.init(address=address, **init_kwargs)
