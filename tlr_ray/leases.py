"""Leases: one sweep driver runs a job at a time, however many drivers share the storage root.

Two drivers of one sweep (or of two sweeps that share jobs) on one root would otherwise both train a
job that neither has finished. Before a driver starts a job it takes the job's lease, a small file
`leases/<job id>.json` in the root; the other driver sees the lease, waits, and reuses the artifact once
the lease is released (docs/architecture.md, "Fault tolerance").

- Taking a lease is atomic on a folder store (a file created with O_EXCL: exactly one driver wins).
  An object store has no create-if-absent in pyarrow: there the lease is written if absent and read
  back (best effort; a lost race is still caught later, since publishing keeps an intact artifact).
- The holder rewrites each of its leases every `HEARTBEAT_S` from a background thread.
- A lease not rewritten for `TTL_S`, or held by a process of this host that no longer exists, is
  stale: a dead driver's lease is taken over (renamed aside, then taken as above).
Tests shorten both times with TLR_RAY_LEASE_TTL_S and TLR_RAY_LEASE_HEARTBEAT_S.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid

import pyarrow.fs as pafs

from tlr_ray import storage as store

log = logging.getLogger(__name__)
FOLDER = "leases"
TTL_S = float(os.environ.get("TLR_RAY_LEASE_TTL_S", 120))
HEARTBEAT_S = float(os.environ.get("TLR_RAY_LEASE_HEARTBEAT_S", 15))
_OPEN: set[str] = set()  # owners (Leases objects) open in this process


def alive(pid: int) -> bool:
    """Whether process `pid` of this host exists."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class Leases:
    """The leases one driver holds on one storage root. `close()` releases them all."""

    def __init__(self, storage: str, what: str = "", ttl: float = TTL_S, heartbeat: float = HEARTBEAT_S):
        self.fs, root = store.filesystem(storage)
        self.folder = f"{root}/{FOLDER}"
        self.ttl, self.heartbeat = ttl, heartbeat
        self.me = {"owner": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(), "what": what}
        _OPEN.add(self.me["owner"])
        self.held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        store.make_parent(self.fs, f"{self.folder}/x")

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state (never restored by us: a rerun starts
        # from the artifacts); a copy holds nothing and never beats.
        return {**self.__dict__, "held": set(), "_lock": None, "_stop": None, "_thread": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock(), _stop=threading.Event())
        self._stop.set()

    def path(self, job_id: str) -> str:
        return f"{self.folder}/{job_id}.json"

    def holder(self, job_id: str) -> dict | None:
        """Who holds the job's lease (host, pid, what), or None if nobody does or the lease is stale."""
        info = self.fs.get_file_info(self.path(job_id))
        if info.type == pafs.FileType.NotFound:
            return None
        try:
            held = json.loads(store.read_bytes(self.fs, self.path(job_id)))
        except (OSError, ValueError):  # half-written by an object store, or removed meanwhile
            held = {}
        return None if self._stale(held, info) else held

    def _stale(self, held: dict, info: pafs.FileInfo) -> bool:
        if held.get("owner") == self.me["owner"]:
            return False
        if held.get("host") == self.me["host"]:
            if held.get("pid") == os.getpid():  # this process's, or a dead driver's whose pid was reused
                return held.get("owner") not in _OPEN
            if not alive(int(held.get("pid", 0))):
                return True  # its driver is gone
        age = time.time() - info.mtime.timestamp() if info.mtime else 0.0
        return age > self.ttl

    def acquire(self, job_id: str) -> bool:
        """Take the job's lease; False if another live driver holds it."""
        if job_id in self.held:
            return True
        if self.holder(job_id) is not None:
            return False
        if store.exists(self.fs, self.path(job_id)):  # a stale one
            self._set_aside(job_id)
        if not self._create(job_id):
            return False
        with self._lock:
            self.held.add(job_id)
        self._start_heartbeat()
        return True

    def _set_aside(self, job_id: str) -> None:
        """Move a stale lease out of the way; of two drivers doing so at once, one rename succeeds."""
        try:
            self.fs.move(self.path(job_id), f"{self.path(job_id)}.stale-{uuid.uuid4().hex[:8]}")
            log.info("took over the stale lease of %s", job_id)
        except OSError:  # the other driver moved it first
            pass

    def _create(self, job_id: str) -> bool:
        data = json.dumps({**self.me, "job_id": job_id, "since": time.time()}).encode()
        if isinstance(self.fs, pafs.LocalFileSystem):
            try:
                fd = os.open(self.path(job_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        if store.exists(self.fs, self.path(job_id)):
            return False
        store.write_bytes(self.fs, self.path(job_id), data)
        time.sleep(0.2)  # another driver's write of the same moment lands now, then the read-back tells
        try:
            return json.loads(store.read_bytes(self.fs, self.path(job_id))).get("owner") == self.me["owner"]
        except (OSError, ValueError):
            return False

    def refresh(self) -> None:
        """Rewrite every held lease (its time is the heartbeat); a lease another driver took over (this
        one was paused for longer than the TTL) is dropped, with a warning. Under the lock, so that a
        release in between cannot be undone by a rewrite."""
        with self._lock:
            for job_id in sorted(self.held):
                try:
                    now = json.loads(store.read_bytes(self.fs, self.path(job_id)))
                except (OSError, ValueError):
                    now = {}
                if now.get("owner") != self.me["owner"]:
                    log.warning("the lease of job %s was taken over by %s", job_id, now or "nobody")
                    self.held.discard(job_id)
                    continue
                store.write_bytes(self.fs, self.path(job_id), json.dumps({**now, "refreshed": time.time()}).encode())

    def release(self, job_id: str) -> None:
        with self._lock:
            if job_id not in self.held:
                return
            self.held.discard(job_id)
            try:
                self.fs.delete_file(self.path(job_id))
            except OSError as e:
                log.warning("could not release the lease of %s: %s", job_id, e)

    def close(self) -> None:
        self._stop.set()
        _OPEN.discard(self.me["owner"])
        for job_id in sorted(self.held):
            self.release(job_id)

    def _start_heartbeat(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="tlr_ray-leases", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self.refresh()
            except Exception as e:  # noqa: BLE001  storage hiccup: the next beat tries again (TTL >> beat)
                log.warning("lease heartbeat failed: %s", e)
