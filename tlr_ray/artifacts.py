"""The artifact store: one folder per job, published whole, verified before reuse.

Layout under the storage root (shared by every sweep, so identical jobs are reused across sweeps):
    jobs/<job id>/manifest.json      written last: job, metrics, sha256 of every file
    jobs/<job id>/adapter/...        the `adapters` library's own save format (la, ta)
    jobs/<job id>/predictions.parquet   (eval)
    staging/<job id>-<random>/       work in progress (local stores); renamed into jobs/ when complete
    corrupt/<job id>-<time>-<random>/   damaged artifacts, kept for inspection
A job counts as done only if its manifest exists and every checksum matches; anything else is moved
aside to corrupt/ (never silently used) and the job is run again.

The root is a folder or a URI (tlr_ray/storage.py). A folder publishes with one atomic rename. An
object store cannot rename a directory, so a job is written in a local temp folder, every file is
uploaded to jobs/<id>/, and the manifest goes up last: until it exists (and its checksums match) the
upload does not count. Jobs read their inputs from a local copy (`local_copy`), which for a remote store
is a verified download cached in $TLR_RAY_CACHE/artifacts/ (default ~/.cache/tlr_ray).

Limit of the remote path: two processes publishing the same job at the same moment (two sweeps sharing
a store) may interleave their uploads; the mix then fails verification and the job runs again.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.fs as pafs

from tlr_ray import storage as store

if TYPE_CHECKING:
    from tlr_ray.plan import Job

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def location(storage: str | os.PathLike, job_id: str) -> str:
    """Where the job's artifact is: a folder path for a local store, a URI for a remote one."""
    return store.join(store.resolve(storage), "jobs", job_id)


def _folder(storage, job_id: str, under: str = "jobs") -> tuple[pafs.FileSystem, str]:
    fs, root = store.filesystem(store.resolve(storage))  # one client per root, not per job
    return fs, f"{root}/{under}/{job_id}"


def new_staging(storage: str | os.PathLike, job_id: str) -> Path:
    """A fresh local folder for the job to write into. For a local store it is inside the store, so
    that publishing is a rename on the same filesystem; for a remote store a local temp folder."""
    if store.is_local(storage):
        path = Path(store.resolve(storage)) / "staging" / f"{job_id}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path
    return Path(tempfile.mkdtemp(prefix=f"tlr_ray-{job_id}-"))


def _sha256(stream) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: stream.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return _sha256(f)


def publish(storage: str | os.PathLike, staging: Path, job: Job, metrics: dict,
            ran_on: dict | None = None) -> str:
    """Checksum everything in `staging` and publish it as the job's artifact, manifest last; `staging`
    is consumed. If the job already has an intact artifact (a retried trial, a concurrent sweep), that
    one is kept. Returns the artifact's location."""
    files = {p.relative_to(staging).as_posix(): _file_sha256(p)
             for p in sorted(staging.rglob("*")) if p.is_file()}
    manifest = {"job_id": job.id, "kind": job.kind, **job.record(),
                "metrics": metrics, "files": files, "created": time.time(), "ran_on": ran_on or {}}
    if store.is_local(storage):
        _publish_local(storage, staging, manifest)
    else:
        _publish_remote(storage, staging, manifest)
    return location(storage, job.id)


def _publish_local(storage, staging: Path, manifest: dict) -> None:
    tmp = staging / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, default=str))
    os.replace(tmp, staging / MANIFEST)
    final = Path(location(storage, manifest["job_id"]))
    final.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(2):
        try:
            os.rename(staging, final)
            return
        except OSError:  # someone published the same job first: keep theirs if it verifies
            if verify(storage, manifest["job_id"]) is not None:
                shutil.rmtree(staging, ignore_errors=True)
                return
            if attempt:  # theirs was damaged and moved aside, yet the rename still fails
                raise


def _publish_remote(storage, staging: Path, manifest: dict) -> None:
    job_id = manifest["job_id"]
    if verify(storage, job_id) is not None:
        log.info("%s already has an intact artifact; keeping it", job_id)
        shutil.rmtree(staging, ignore_errors=True)
        return
    fs, folder = _folder(storage, job_id)
    _delete(fs, folder)  # leftovers of an interrupted upload, if verify could not move them aside
    for rel in manifest["files"]:
        store.upload(fs, staging / rel, f"{folder}/{rel}")
    store.write_bytes(fs, f"{folder}/{MANIFEST}", json.dumps(manifest, indent=1, default=str).encode())
    shutil.rmtree(staging, ignore_errors=True)


def verify(storage: str | os.PathLike, job_id: str) -> dict | None:
    """The manifest of a complete, intact artifact, or None. A damaged or partial one is reported and
    moved to corrupt/, so that the job runs again."""
    fs, folder = _folder(storage, job_id)
    if not store.exists(fs, folder):
        return None
    manifest, problem = _check(fs, folder)
    if problem is None:
        return manifest
    where = _move_aside(storage, fs, folder, job_id)
    log.warning("artifact of %s at %s is damaged (%s); %s, and the job will run again",
                job_id, location(storage, job_id), problem, where)
    return None


def _check(fs: pafs.FileSystem, folder: str) -> tuple[dict | None, str | None]:
    """(manifest, None) when every file matches its checksum, else (None, what is wrong)."""
    try:
        manifest = json.loads(store.read_bytes(fs, f"{folder}/{MANIFEST}"))
    except (OSError, ValueError) as e:
        return None, f"no readable manifest: {e}"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        return None, "the manifest lists no files"
    for rel, digest in files.items():
        path = f"{folder}/{rel}"
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None, f"{rel} is missing"
        with fs.open_input_stream(path) as f:
            if _sha256(f) != digest:
                return None, f"{rel} does not match its checksum"
    return manifest, None


def _move_aside(storage, fs: pafs.FileSystem, folder: str, job_id: str) -> str:
    """Move a damaged artifact to corrupt/; returns what happened, for the warning. A local store
    renames the folder. A remote store cannot rename a directory: its files are copied (server side)
    to corrupt/, then the folder is deleted; if copying fails it is only deleted."""
    name = f"{job_id}-{int(time.time())}-{uuid.uuid4().hex[:4]}"
    aside = store.join(store.resolve(storage), "corrupt", name)
    if store.is_local(storage):
        Path(aside).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(folder, aside)
        except FileNotFoundError:
            return "another process already moved it aside"
        return f"moved it to {aside}"
    _, aside_path = _folder(storage, name, "corrupt")
    try:
        for info in fs.get_file_info(pafs.FileSelector(folder, recursive=True)):
            if info.type == pafs.FileType.File:
                target = f"{aside_path}/{info.path[len(folder) + 1:]}"
                store.make_parent(fs, target)
                fs.copy_file(info.path, target)
        done = f"moved it to {aside}"
    except OSError as e:
        done = f"deleted it (copying it to {aside} failed: {e})"
    if not _delete(fs, folder):
        done += "; it could NOT be deleted: remove it by hand (a new upload overwrites its files)"
    return done


def _delete(fs: pafs.FileSystem, folder: str) -> bool:
    try:
        if store.exists(fs, folder):
            fs.delete_dir(folder)
        return True
    except OSError as e:
        log.error("cannot delete %s: %s", folder, e)
        return False


def local_copy(storage: str | os.PathLike, job_id: str) -> Path:
    """The job's artifact as a local folder (for loading adapters): the store's own folder when the store
    is local; else a download into $TLR_RAY_CACHE/artifacts/<job id>, reused while its checksums match
    the store's manifest, fetched again when they do not. Raises FileNotFoundError when the store has
    no manifest for the job, RuntimeError when the download does not match its manifest."""
    if store.is_local(storage):
        return Path(location(storage, job_id))
    fs, folder = _folder(storage, job_id)
    try:
        raw = store.read_bytes(fs, f"{folder}/{MANIFEST}")
        manifest = json.loads(raw)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"{location(storage, job_id)}: no readable manifest ({e}); "
                                "run the job first") from e
    cache = store.cache_root() / "artifacts" / job_id
    if cache.exists():
        problem = _local_problem(cache, manifest)
        if problem is None:
            return cache
        log.warning("local copy %s of %s does not match the store (%s); downloading it again", cache, job_id,
                    problem)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{job_id}-{uuid.uuid4().hex[:8]}")
    try:
        problem = _download(fs, folder, manifest, tmp)
        if problem is not None:
            moved = verify(storage, job_id) is None  # reports and moves aside a damaged artifact
            raise RuntimeError(f"artifact of {job_id} at {location(storage, job_id)}: {problem}; "
                               + ("it was moved aside, run the job again" if moved else
                                  "yet it verifies now (a transient read error?): try again"))
        (tmp / MANIFEST).write_bytes(raw)
        if cache.exists():
            shutil.rmtree(cache, ignore_errors=True)
        try:
            os.rename(tmp, cache)
        except OSError:  # another process on this machine downloaded it first: keep theirs if intact
            if _local_problem(cache, manifest) is not None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cache


def _download(fs: pafs.FileSystem, folder: str, manifest: dict, into: Path) -> str | None:
    """Download the manifest's files, checking each checksum on the way; what is wrong, or None."""
    for rel, digest in manifest.get("files", {}).items():
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        try:
            src = fs.open_input_stream(f"{folder}/{rel}")
        except FileNotFoundError:
            return f"{rel} is missing"
        with src, open(target, "wb") as dst:
            for block in iter(functools.partial(src.read, 1 << 20), b""):
                h.update(block)
                dst.write(block)
        if h.hexdigest() != digest:
            return f"{rel} does not match its checksum"
    return None


def _local_problem(folder: Path, manifest: dict) -> str | None:
    """Whether a local copy holds exactly the manifest's files (checked byte by byte)."""
    try:
        cached = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        return f"no readable manifest: {e}"
    if cached.get("files") != manifest.get("files"):
        return "it is a copy of another publication"
    for rel, digest in manifest["files"].items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        if _file_sha256(path) != digest:
            return f"{rel} does not match its checksum"
    return None
