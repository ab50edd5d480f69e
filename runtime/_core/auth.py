"""Cluster tokens and the ZeroMQ CURVE keys derived from them.

Every TCP connection to a shoal node is encrypted and authenticated with CURVE. Both key
pairs are derived from the cluster's token, so whoever holds the token can connect and nobody
else can even complete the handshake: the server checks each client's public key against the
one the token yields before any message reaches the node manager.
"""

from __future__ import annotations

import hashlib
import os
import secrets

import zmq
from zmq.utils import z85

TOKEN_FILE = "token"


def new_token() -> str:
    return secrets.token_hex(24)


def _keypair(token: str, role: bytes) -> tuple[bytes, bytes]:
    secret = z85.encode(hashlib.blake2b(token.encode(), digest_size=32, person=role).digest())
    return zmq.curve_public(secret), secret


def server_keys(token: str) -> tuple[bytes, bytes]:
    return _keypair(token, b"shoal-server")


def client_keys(token: str) -> tuple[bytes, bytes]:
    return _keypair(token, b"shoal-client")


def data_key(token: str) -> bytes:
    """The key that signs requests on the nodes' data ports (object chunks travel unencrypted)."""
    return hashlib.blake2b(token.encode(), digest_size=32, person=b"shoal-data").digest()


def sign(key: bytes, *parts: bytes) -> bytes:
    return hashlib.blake2b(b"\x00".join(parts), digest_size=32, key=key).digest()


def signature_ok(key: bytes, mac: bytes, *parts: bytes) -> bool:
    return secrets.compare_digest(sign(key, *parts), mac)


def write_token(session_dir: str, token: str) -> str:
    path = os.path.join(session_dir, TOKEN_FILE)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token)
    return path


def read_token(session_dir: str) -> str | None:
    try:
        with open(os.path.join(session_dir, TOKEN_FILE)) as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def secure_server(socket, token: str) -> None:
    public, secret = server_keys(token)
    socket.curve_server = True
    socket.curve_publickey = public
    socket.curve_secretkey = secret


def secure_client(socket, token: str) -> None:
    server_public, _ = server_keys(token)
    public, secret = client_keys(token)
    socket.curve_serverkey = server_public
    socket.curve_publickey = public
    socket.curve_secretkey = secret


class TokenAuthenticator:
    """Admits CURVE clients whose public key comes from the cluster token (ZAP handler)."""

    def __init__(self, context, token: str):
        from zmq.auth.thread import ThreadAuthenticator

        self.expected = client_keys(token)[0]
        self.rejected = 0
        self._thread = ThreadAuthenticator(context, log=None)
        self._thread.start()
        self._thread.configure_curve_callback(domain="*", credentials_provider=self)

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = secrets.compare_digest(key, self.expected)
        if not allowed:
            self.rejected += 1
        return allowed

    def stop(self) -> None:
        self._thread.stop()
