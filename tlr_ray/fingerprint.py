"""Content fingerprints of models and data, the part of a job id that says "same input".

Local files are hashed by content, so the same demo world generated in two folders gives the same job
ids; very large local trees fall back to size and modification time to keep planning instant.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

CONTENT_HASH_LIMIT = 256 * 2**20  # bytes; above this, (size, mtime) stands in for the content


def digest(obj) -> str:
    """sha256 of a JSON-able object in canonical form."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@functools.cache
def path_fingerprint(path: str) -> str:
    p = Path(path)
    if not p.exists():
        return f"missing:{p}"  # only a dry run plans with missing files; a run refuses first
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    total = sum(f.stat().st_size for f in files)
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        if total <= CONTENT_HASH_LIMIT:
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        else:
            st = os.stat(f)
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    kind = "content" if total <= CONTENT_HASH_LIMIT else "stat"
    return f"{kind}:{h.hexdigest()[:20]}"


def source_fingerprint(hub_id: str | None, revision: str | None, config: str | None = None,
                       data_dir: str | None = None, local_path: str | None = None) -> str:
    if local_path:
        return path_fingerprint(local_path)
    return f"hub:{hub_id}@{revision or 'main'}:{config or ''}:{data_dir or ''}"
