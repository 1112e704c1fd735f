"""gunicorn's `on_starting` hook (gunicorn.conf.py): the port is checked before anything binds it."""

import os
import socket
import sys


def check_port(server):
    """gunicorn's `on_starting` hook: stop at once, naming the port, if another program holds
    it. Otherwise workers crash-loop on it (with GUNICORN_REUSE_PORT=1) or the master retries
    for seconds; and with SO_REUSEPORT a second instance would silently share the port."""
    if os.environ.get("GUNICORN_FD") or os.environ.get("LISTEN_FDS"):
        return  # a re-exec (USR2) or systemd: the sockets are inherited, already ours
    for address in server.cfg.address:
        if not isinstance(address, tuple):
            continue  # a unix socket path: gunicorn's own message is clear
        host, port = address[0], address[1]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                message = (
                    f"port {port} ({host}) cannot be used: {exc.strerror}. Another program "
                    f"(or another copy of the connector) holds it: stop it, or set PORT to a "
                    f"free port."
                )
                server.log.error(message)
                sys.exit(1)
