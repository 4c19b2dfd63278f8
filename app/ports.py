"""Whether ``jmedllm serve`` could listen on an address: checked before a model loads, and by the doctor."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Literal

Why = Literal["in_use", "not_here", "unresolved", "refused"]


@dataclass(frozen=True)
class ListenProblem:
    """Why listening on ``host:port`` would fail, in one sentence."""

    why: Why
    message: str


def listen_problem(host: str, port: int) -> ListenProblem | None:
    """Bind ``host:port`` once, as uvicorn will (``SO_REUSEADDR``), and let go; None when it works."""
    address = f"{host}:{port}"
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
    except socket.gaierror as exc:
        return ListenProblem("unresolved", f"cannot resolve the host {host!r} ({exc.strerror}).")
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return ListenProblem("in_use", f"{address} is in use (another program, or jmedllm serve already "
                                           "running): serve needs another --port.")
        if exc.errno == errno.EADDRNOTAVAIL:
            return ListenProblem("not_here", f"{host} is not an address of this machine.")
        return ListenProblem("refused", f"cannot listen on {address}: {exc.strerror}.")
    return None
