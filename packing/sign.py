"""Signs a pack: the Ed25519 signature of manifest.json's exact bytes, stored as manifest.sig.

The manifest holds every file's sha256 and its own integrity field, so the signature covers the
whole pack. Checking is the runtime's (`load(path, trusted_keys=...)`, `edgepack verify
--trusted-key`); both need the `sign` extra (cryptography).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

from edgepack.runtime.errors import EdgepackError
from edgepack.runtime.manifest import MANIFEST_NAME
from edgepack.runtime.pack import SIGNATURE_NAME, PackReader

from .staging import replace, scratch_dir


def sign_pack(pack: str | os.PathLike[str], key: str | os.PathLike[str] | bytes) -> str:
    """Sign `pack` (directory or archive) in place with an Ed25519 private key (PEM file or
    bytes); replaces any earlier signature. Returns the key's fingerprint.

    >>> sign_pack("digits.edgepack", "key.pem")  # doctest: +SKIP
    'sha256:4f1c09e2a7b3d5c8'
    """
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError as exc:
        raise EdgepackError("signing packs needs: pip install 'edgepack[sign]'") from exc

    try:
        data = key if isinstance(key, bytes) else Path(key).read_bytes()
        private = serialization.load_pem_private_key(data, None)
    except (OSError, ValueError, TypeError) as exc:
        raise EdgepackError(f"cannot read the private key {key!r}: {exc}") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise EdgepackError(f"{key!r} is not an Ed25519 private key")
    pack = Path(pack)
    with PackReader(pack) as reader:
        reader.verify()  # sign only what is intact
        manifest = reader.manifest_bytes
    signature = private.sign(manifest)
    with scratch_dir(f".{pack.name}.", pack.parent, restore=pack) as work:
        staging = work / pack.name
        if pack.is_dir():
            (work / SIGNATURE_NAME).write_bytes(signature)
            replace(work / SIGNATURE_NAME, pack / SIGNATURE_NAME)
        else:
            with zipfile.ZipFile(pack) as old, zipfile.ZipFile(staging, "w") as new:
                for info in old.infolist():
                    if info.filename != SIGNATURE_NAME:
                        new.writestr(info, old.read(info.filename))
                entry = zipfile.ZipInfo(SIGNATURE_NAME, old.getinfo(MANIFEST_NAME).date_time)
                entry.external_attr = old.getinfo(MANIFEST_NAME).external_attr
                new.writestr(entry, signature)
            replace(staging, pack)
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:16]
