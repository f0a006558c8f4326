"""Leases (tlr_ray/leases.py): one driver per job on a shared storage root. Real files, real processes:
two Leases objects stand for two drivers; a dead driver is a process that really exited."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tlr_ray.dispatch import Dispatcher
from tlr_ray.leases import Leases
from tlr_ray.plan import Job


@pytest.fixture(autouse=True)
def closed_after(monkeypatch):
    """Every Leases object of a test is closed at its end: no heartbeat thread outlives the test."""
    made = []
    init = Leases.__init__
    monkeypatch.setattr(Leases, "__init__", lambda self, *a, **k: made.append(self) or init(self, *a, **k))
    yield
    for lease in made:
        lease.close()


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_only_one_driver_holds_a_job_and_a_release_frees_it(tmp_path):
    a, b = Leases(str(tmp_path), "sweep a"), Leases(str(tmp_path), "sweep b")
    assert a.acquire("la-en") and a.acquire("la-en")  # taking one's own lease again is fine
    assert not b.acquire("la-en")
    assert b.holder("la-en")["what"] == "sweep a" and b.holder("la-en")["pid"] == os.getpid()
    assert b.acquire("la-sw")  # other jobs are free
    a.release("la-en")
    assert not (tmp_path / "leases" / "la-en.json").exists()
    assert b.acquire("la-en") and not a.acquire("la-en")
    b.close()
    assert list((tmp_path / "leases").iterdir()) == []


def test_a_dead_drivers_lease_is_taken_over_at_once(tmp_path):
    lease = tmp_path / "leases" / "la-en.json"
    lease.parent.mkdir()
    import socket
    lease.write_text(json.dumps({"owner": "gone", "host": socket.gethostname(), "pid": dead_pid(), "what": "x"}))
    b = Leases(str(tmp_path))
    assert b.holder("la-en") is None and b.acquire("la-en")
    assert json.loads(lease.read_text())["owner"] == b.me["owner"]
    assert [p.name for p in lease.parent.glob("la-en.json.stale-*")]  # set aside, not silently lost


def test_a_lease_of_another_host_expires_unless_its_driver_beats(tmp_path):
    a = Leases(str(tmp_path), ttl=1.0, heartbeat=0.2)
    a.me["host"] = "elsewhere"  # so its pid cannot be checked from here: only the heartbeat tells
    b = Leases(str(tmp_path), ttl=1.0, heartbeat=0.2)
    assert a.acquire("ta-1")
    time.sleep(1.6)  # a's heartbeat thread keeps rewriting it
    assert not b.acquire("ta-1")
    a._stop.set()  # a's driver hangs: no more heartbeats
    time.sleep(1.6)
    assert b.acquire("ta-1")
    a.refresh()  # a wakes up: it notices it lost the lease and does not write it back
    assert "ta-1" not in a.held
    assert json.loads((tmp_path / "leases" / "ta-1.json").read_text())["owner"] == b.me["owner"]


def job(jid: str, kind: str = "la", needs=()) -> Job:
    return Job(id=jid, kind=kind, task=None, dataset=None, variant=None, variants=(), seed=None, ratio=None,
               languages=(), target=None, needs=tuple(needs), spec={}, inputs={})


def test_the_dispatcher_waits_for_a_job_another_driver_runs_and_reuses_it():
    state = {"la-en": "wait"}
    d = Dispatcher([job("la-en"), job("la-sw"), job("ta", "ta", ["la-en"])], {"la": 2, "ta": 1},
                   claim=lambda j: state.get(j.id, "run"))
    d.RECHECK_S = 0.0
    assert d.suggest("t1") == {"job_id": "la-sw"}  # la-en is elsewhere: the next job goes
    assert d.suggest("t2") is None                  # the TA needs la-en: wait
    d.on_trial_complete("t1")
    assert d.suggest("t3") is None                  # nothing of ours runs, but la-en is elsewhere: no error
    state["la-en"] = "done"
    assert d.suggest("t4") == {"job_id": "ta"} and d.reused == ["la-en"]
