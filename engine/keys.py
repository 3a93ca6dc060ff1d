"""CurveZMQ keys: the engine's keypair, trainers' keypairs, and which trainers may connect.

``engine keys --dir keys`` writes ``server.key`` (public, give it to trainers),
``server.key_secret`` (stays with the engine), ``trainer.key``/``trainer.key_secret`` (for
trainers) and ``authorized/trainer.key`` (the trainers the engine accepts; add more public keys
there). The engine binds to loopback unless it has keys; with keys, a trainer whose public key is
not authorised is refused during the handshake.
"""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

import zmq.auth

SERVER = "server"
TRAINER = "trainer"
AUTHORIZED = "authorized"


class KeysError(ValueError):
    """Keys that are missing or unreadable; the message names the file."""


def make_keys(directory: Path | str) -> dict[str, Path]:
    """Create a server and a trainer keypair and authorise the trainer. Refuses to overwrite keys."""
    directory = Path(directory)
    if (directory / f"{SERVER}.key_secret").exists():
        raise KeysError(f"{directory} already holds keys; remove it first to make new ones")
    directory.mkdir(parents=True, exist_ok=True)
    server_public, server_secret = zmq.auth.create_certificates(directory, SERVER)
    trainer_public, trainer_secret = zmq.auth.create_certificates(directory, TRAINER)
    authorized = directory / AUTHORIZED
    authorized.mkdir(exist_ok=True)
    shutil.copy(trainer_public, authorized / Path(trainer_public).name)
    for secret in (server_secret, trainer_secret):
        Path(secret).chmod(0o600)
    return {"server_public": Path(server_public), "server_secret": Path(server_secret),
            "trainer_public": Path(trainer_public), "trainer_secret": Path(trainer_secret),
            "authorized": authorized}


def _load(path: Path, want_secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise KeysError(f"cannot read key file {path}: {exc}") from None
    if want_secret and secret is None:
        raise KeysError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret


def server_keys(directory: Path | str) -> tuple[bytes, bytes, Path]:
    """The engine's public and secret key and the folder of authorised trainer keys."""
    directory = Path(directory)
    public, secret = _load(directory / f"{SERVER}.key_secret", want_secret=True)
    authorized = directory / AUTHORIZED
    if not authorized.is_dir():
        raise KeysError(f"{authorized} is missing: it lists the trainers' public keys the engine accepts")
    return public, secret, authorized


def trainer_keys(server_key: Path | str, trainer_secret: Path | str) -> tuple[bytes, bytes, bytes]:
    """The engine's public key and this trainer's public and secret key."""
    server_public, _ = _load(Path(server_key), want_secret=False)
    public, secret = _load(Path(trainer_secret), want_secret=True)
    return server_public, public, secret


def is_loopback(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint only listens on this machine."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
