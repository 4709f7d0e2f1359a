"""HMAC-SHA256 signing of message bytes with a shared secret, and key rotation. Broker-neutral.

A :class:`Signer` holds one or more keys. It signs with the first and accepts a tag made with any of
them, so a secret is rotated without downtime: give every consumer ``new,old``, then every producer
``new``, then drop ``old``. Tags are compared in constant time (:func:`hmac.compare_digest`).

Wire form of a sealed message: ``tag (32 bytes) + data``, where ``tag = HMAC-SHA256(key, data)``.
What ``data`` covers is the caller's choice (the listening brokers sign ``id`` and body together).
Signing proves the sender knew a key and that the bytes were not changed; it does not encrypt, and by
itself does not stop a recorded message from being replayed.

Keys come from one rule, shared by every broker that uses them (:func:`keys_from`): the broker option
``secret`` (a string; several keys separated by commas, the first signs), else the environment variable
``BOOSTKERNEL_<NAME>_SECRET`` (``NAME`` is the broker's name in upper case, ``-`` as ``_``), else the
variable ``BOOSTKERNEL_SECRET``.

>>> s = Signer(["new-key", "old-key"])
>>> sealed = s.seal(b"payload")
>>> s.open(sealed)
b'payload'
>>> s.open(Signer(["old-key"]).seal(b"x"))  # made with the old key: still accepted
b'x'
>>> s.open(sealed[:-1] + b"!") is None
True
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["TAG_BYTES", "Signer", "keys_from", "secret_env_names"]

#: Length of an HMAC-SHA256 tag.
TAG_BYTES = 32


def _pads(key: bytes) -> tuple[Any, Any]:
    """The inner and outer SHA-256 states of HMAC (RFC 2104) for ``key``, computed once per key.

    Each tag then costs two ``copy()``/``update()`` pairs instead of building an HMAC object (with
    OpenSSL 3 that set-up costs more than hashing a small message); the result equals
    ``hmac.digest(key, data, "sha256")`` (checked by the tests)."""
    if len(key) > 64:  # SHA-256's block size: longer keys are hashed first
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return (hashlib.sha256(bytes(b ^ 0x36 for b in key)), hashlib.sha256(bytes(b ^ 0x5C for b in key)))


class Signer:
    """Signs with the first key; verifies against every key (rotation). Immutable and thread-safe."""

    __slots__ = ("_pads",)

    def __init__(self, keys: Iterable[str | bytes]) -> None:
        ks = tuple(k.encode() if isinstance(k, str) else bytes(k) for k in keys)
        if not ks or any(not k for k in ks):
            raise ValueError("a Signer needs at least one non-empty key")
        self._pads = tuple(_pads(k) for k in ks)

    @staticmethod
    def _tag(pads: tuple[Any, Any], data: bytes) -> bytes:
        inner = pads[0].copy()
        inner.update(data)
        outer = pads[1].copy()
        outer.update(inner.digest())
        return outer.digest()  # type: ignore[no-any-return]

    def __repr__(self) -> str:  # never shows a key
        return f"Signer(<{len(self._pads)} key(s)>)"

    def sign(self, data: bytes) -> bytes:
        """The 32-byte HMAC-SHA256 tag of ``data`` under the first key."""
        return self._tag(self._pads[0], data)

    def verify(self, data: bytes, tag: bytes) -> bool:
        """Whether ``tag`` is the tag of ``data`` under any key (constant-time per key)."""
        ok = False
        for pads in self._pads:  # no early exit: the time taken does not say which key matched
            ok |= hmac.compare_digest(self._tag(pads, data), tag)
        return ok

    def seal(self, data: bytes) -> bytes:
        """``tag + data``."""
        return self.sign(data) + data

    def open(self, sealed: bytes) -> bytes | None:
        """The data of a sealed message, or ``None`` if it is too short or its tag does not verify."""
        if len(sealed) < TAG_BYTES:
            return None
        data = sealed[TAG_BYTES:]
        return data if self.verify(data, sealed[:TAG_BYTES]) else None


def secret_env_names(name: str) -> tuple[str, str]:
    """The environment variables read for broker ``name``: its own, then the shared one."""
    return f"BOOSTKERNEL_{name.upper().replace('-', '_')}_SECRET", "BOOSTKERNEL_SECRET"


def keys_from(name: str, options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    """The keys configured for broker ``name``: option ``secret``, else its environment variables.

    Returns ``[]`` when none is set. Several keys are separated by commas (or given as a list)."""
    env = os.environ if environ is None else environ
    raw: Any = options.get("secret")
    if raw is None:
        for var in secret_env_names(name):
            if env.get(var):
                raw = env[var]
                break
    if raw is None:
        return []
    parts = raw.split(",") if isinstance(raw, str) else [str(k) for k in raw]
    return [p.strip() for p in parts if p.strip()]
