"""The artifact store: content-addressed blobs (weights, teacher outputs) of a run.

A blob lives at ``<run>/artifacts/<first two hex digits>/<sha256>``. Trainers upload it in chunks
over the protocol; a blob appears under its digest only once every byte arrived and the digest
checks out, so a reader never sees half of one. Each uploader's partial uploads are its own
(``.partial/<uploader>-<digest>-<total>``): the first chunk fixes the total, an uploader may have at
most ``upload_quota`` bytes declared in flight, and uploads nobody added to for a while are removed.

Example::

    >>> store = ArtifactStore(run_dir / "artifacts")
    >>> digest = store.put(b"weights")
    >>> store.read(digest)
    b'weights'
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from engine.protocol import CHUNK, DIGEST, MAX_BLOB

ARTIFACTS_DIR = "artifacts"
_UPLOADER = re.compile(r"[0-9a-z]{1,64}")


class ArtifactError(ValueError):
    """A chunk or blob the store refuses (wrong offset, wrong digest, missing blob)."""


class Accepted(NamedTuple):
    """What :meth:`ArtifactStore.put_chunk` did: the bytes of the blob held now, and how many it wrote."""

    have: int
    written: int


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Blobs by sha256 digest under one directory; partial uploads wait in ``.partial/``."""

    def __init__(self, root: Path | str, max_blob: int = MAX_BLOB, upload_quota: int = MAX_BLOB) -> None:
        self.root = Path(root)
        self.max_blob = max_blob
        self.upload_quota = upload_quota  # bytes one uploader may have declared in unfinished uploads
        self._partial = self.root / ".partial"

    def path(self, digest: str) -> Path:
        if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
            raise ArtifactError("an artifact is named by a sha256 hex digest (64 lowercase hex digits)")
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def put(self, data: bytes) -> str:
        """Store a whole blob (local use); returns its digest."""
        digest = digest_of(data)
        if not self.has(digest):
            self._commit(digest, data)
        return digest

    def read(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"no artifact {digest}") from None

    def put_chunk(self, digest: str, offset: int, total: int, data: bytes, uploader: str = "local") -> Accepted:
        """Accept the chunk at ``offset`` of ``uploader``'s ``total``-byte blob; returns the bytes held so far
        and the bytes this chunk added (none for a blob already stored or a chunk out of order).

        Chunks must arrive in order; a chunk at another offset is ignored and the answer says where
        to resume (an upload cut short by a restart picks up where it stopped). When the last byte
        arrives the digest is checked and the blob published atomically.
        """
        if self.has(digest):
            return Accepted(total, 0)
        if total > self.max_blob:
            raise ArtifactError(f"blob of {total} bytes exceeds the {self.max_blob}-byte limit")
        if not _UPLOADER.fullmatch(uploader):
            raise ArtifactError("an uploader is named by 1-64 lowercase letters and digits")
        self._partial.mkdir(parents=True, exist_ok=True)
        part = self._partial / f"{uploader}-{digest}-{total}"
        if not part.exists():
            self._check_new_upload(uploader, digest, total)
        have = part.stat().st_size if part.exists() else 0
        if offset != have:
            return Accepted(have, 0)
        if offset + len(data) > total:
            raise ArtifactError(f"chunk ends at {offset + len(data)}, past the blob's {total} bytes")
        with part.open("ab") as handle:
            handle.write(data)
        have += len(data)
        if have == total:
            content = part.read_bytes()
            part.unlink()
            if digest_of(content) != digest:
                raise ArtifactError(f"upload of {digest} does not match its digest; discarded")
            self._commit(digest, content)
        return Accepted(have, len(data))

    def _check_new_upload(self, uploader: str, digest: str, total: int) -> None:
        declared = 0
        for other in self._partial.glob(f"{uploader}-*"):
            _, other_digest, other_total = other.name.split("-")  # the uploader, a digest, a number: no "-"
            if other_digest == digest:
                raise ArtifactError(f"the upload of {digest} was begun as {other_total} bytes, not {total}: the "
                                    "first chunk fixes a blob's size")
            declared += int(other_total)
        if declared + total > self.upload_quota:
            raise ArtifactError(f"{declared + total} bytes would be in unfinished uploads, over the "
                                f"{self.upload_quota}-byte quota of one uploader")

    def expire_uploads(self, idle: float) -> list[Path]:
        """Remove partial uploads nothing was added to for ``idle`` seconds; returns what was removed."""
        removed = []
        cutoff = time.time() - idle
        for part in self._partial.glob("*") if self._partial.is_dir() else ():
            try:
                if part.stat().st_mtime < cutoff:
                    part.unlink()
                    removed.append(part)
            except FileNotFoundError:  # finished or removed meanwhile
                continue
        return removed

    def read_chunk(self, digest: str, offset: int) -> tuple[bytes, int]:
        """The chunk of a blob starting at ``offset`` and the blob's total size."""
        path = self.path(digest)
        try:
            with path.open("rb") as handle:
                total = os.fstat(handle.fileno()).st_size
                handle.seek(offset)
                return handle.read(CHUNK), total
        except FileNotFoundError:
            raise ArtifactError(f"no artifact {digest}") from None

    def _commit(self, digest: str, data: bytes) -> None:
        target = self.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        # A temporary file of its own: several processes may store the same blob at once.
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{digest[:8]}-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
