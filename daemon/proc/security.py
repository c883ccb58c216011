"""ZeroMQ CURVE authentication for the daemon's public sockets (frames in, alerts out).

Keys are the files pyzmq's :func:`zmq.auth.create_certificates` writes
(``name.key`` public, ``name.key_secret`` both). Configuration
(``[endpoints]``):

* ``curve_server_secret``: the daemon's secret key file. When set, the frames
  socket and the alerts socket are CURVE servers, and a ZAP authenticator
  admits only clients whose public key file is in ``curve_clients_dir``;
* ``curve_clients_dir``: directory of allowed clients' public key files;
* ``curve_client_secret`` / ``curve_server_public``: what a source or a
  subscriber (``gwstream source``, ``gwstream listen``) uses to connect.

An unauthenticated peer's handshake is refused by libzmq: a publisher without
an allowed key cannot inject a single frame, a subscriber without one reads
nothing. :mod:`gwstream.daemon.config` refuses any non-loopback frames or
alerts endpoint unless ``allow_remote`` is set *and* CURVE is configured.
"""

from __future__ import annotations

import logging
from pathlib import Path

import zmq
from gwstream.daemon.errors import ConfigError

__all__ = ["ServerAuth", "secure_server", "secure_client", "curve_enabled"]

log = logging.getLogger(__name__)


def curve_enabled(endpoints) -> bool:
    return bool(endpoints.curve_server_secret)


def _load(path: str, key: str, secret: bool):
    from zmq.auth import load_certificate

    p = Path(path)
    if not p.is_file():
        raise ConfigError(key, path, "an existing key file (zmq.auth.create_certificates)")
    try:
        public, private = load_certificate(str(p))
    except (ValueError, OSError) as exc:
        raise ConfigError(key, path, f"a readable CURVE key file ({exc})") from None
    if secret and not private:
        raise ConfigError(key, path, "a *secret* key file (name.key_secret)")
    return public, private


class ServerAuth:
    """The ZAP authenticator of one process's context (started only when CURVE is configured)."""

    def __init__(self, ctx: zmq.Context, endpoints):
        self.auth = None
        if not curve_enabled(endpoints):
            return
        from zmq.auth.thread import ThreadAuthenticator

        clients = Path(endpoints.curve_clients_dir)
        if not endpoints.curve_clients_dir or not clients.is_dir():
            raise ConfigError("endpoints.curve_clients_dir", endpoints.curve_clients_dir,
                              "a directory of allowed client public keys (required with curve_server_secret)")
        self.auth = ThreadAuthenticator(ctx, log=logging.getLogger("gwstream.daemon.zap"))
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(clients))
        log.info("CURVE authentication on: clients allowed from %s (%d keys)", clients,
                 len(list(clients.glob("*.key"))))

    def stop(self) -> None:
        if self.auth is not None:
            self.auth.stop()
            self.auth = None


def secure_server(sock: zmq.Socket, endpoints) -> None:
    """Make ``sock`` (before bind) a CURVE server when configured."""
    if not curve_enabled(endpoints):
        return
    public, secret = _load(endpoints.curve_server_secret, "endpoints.curve_server_secret", True)
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_server = True


def secure_client(sock: zmq.Socket, endpoints) -> None:
    """Give ``sock`` (before connect) client keys when ``curve_server_public`` is configured."""
    if not endpoints.curve_server_public:
        return
    server_public, _ = _load(endpoints.curve_server_public, "endpoints.curve_server_public", False)
    if not endpoints.curve_client_secret:
        raise ConfigError("endpoints.curve_client_secret", "", "a client secret key file (with curve_server_public)")
    public, secret = _load(endpoints.curve_client_secret, "endpoints.curve_client_secret", True)
    sock.curve_serverkey = server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret
