"""The artifact store: one folder per job, published atomically, verified before reuse.

Layout under the storage root (shared by every sweep, so identical jobs are reused across sweeps):
    jobs/<job id>/manifest.json      written last: job, metrics, sha256 of every file
    jobs/<job id>/adapter/...        the `adapters` library's own save format (la, ta)
    jobs/<job id>/predictions.parquet   (eval)
    staging/<job id>-<random>/       work in progress; renamed into jobs/ when complete
A job counts as done only if its manifest exists and every checksum matches; anything else is moved
aside to corrupt/ (kept for inspection, never silently used) and the job is run again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def job_dir(storage: str | os.PathLike, job_id: str) -> Path:
    return Path(storage) / "jobs" / job_id


def new_staging(storage: str | os.PathLike, job_id: str) -> Path:
    path = Path(storage) / "staging" / f"{job_id}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def publish(storage: str | os.PathLike, staging: Path, job: dict, metrics: dict, ran_on: dict | None = None) -> Path:
    """Checksum everything in `staging`, write the manifest last, then rename into place atomically."""
    files = {str(p.relative_to(staging)): _sha256(p) for p in sorted(staging.rglob("*")) if p.is_file()}
    manifest = {"job_id": job["id"], "kind": job["kind"], "spec": job["spec"], "inputs": job["inputs"],
                "metrics": metrics, "files": files, "created": time.time(), "ran_on": ran_on or {}}
    tmp = staging / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, default=str))
    os.replace(tmp, staging / MANIFEST)
    final = job_dir(storage, job["id"])
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(staging, final)
    except OSError:  # someone published the same job first (a retried trial): keep theirs if it verifies
        if verify(storage, job["id"]) is None:
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return final


def verify(storage: str | os.PathLike, job_id: str) -> dict | None:
    """The manifest of a complete, intact artifact, or None. A damaged one is moved to corrupt/."""
    folder = job_dir(storage, job_id)
    if not folder.exists():
        return None
    problem = _check(folder)
    if problem is None:
        return json.loads((folder / MANIFEST).read_text())
    aside = Path(storage) / "corrupt" / f"{job_id}-{int(time.time())}"
    aside.parent.mkdir(parents=True, exist_ok=True)
    os.rename(folder, aside)
    log.warning("artifact of %s is damaged (%s); moved to %s and the job will run again", job_id, problem, aside)
    return None


def _check(folder: Path) -> str | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        return f"no readable manifest: {e}"
    for rel, digest in manifest.get("files", {}).items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        if _sha256(path) != digest:
            return f"{rel} does not match its checksum"
    return None
