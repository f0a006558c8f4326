"""Which job runs next: the `Dispatcher`, a Ray Tune searcher that hands out each job as soon as the jobs
it needs have finished, within per-kind limits and the cluster's room (docs/architecture.md,
"Scheduling"). Tune calls it; tests/test_dispatch.py drives it without Ray."""
from __future__ import annotations

import time
from collections.abc import Callable

import ray
from ray.tune.search import Searcher

from tlr_ray.config import Resources
from tlr_ray.plan import Job


def demand(res: Resources, kind: str) -> dict[str, float]:
    """The CPUs/GPUs one job of this kind occupies while it runs (its workers, or the eval trial)."""
    workers = res.num_workers if kind != "eval" else 1
    out = {"CPU": res.cpus_per_worker * workers}
    if res.use_gpu:
        out["GPU"] = (res.gpus_per_worker or 1) * workers
    return out


def skip_blocked(job: Job, failed: dict[str, str]) -> bool:
    """True, and `job` recorded in `failed`, when a job it needs has failed: it is not run, and its own
    dependants are skipped in turn. The one place that decides that a job will not run."""
    if blocked := [n for n in job.needs if n in failed]:
        failed[job.id] = f"needs {', '.join(blocked)}, which failed"
        return True
    return False


def concurrency(res: Resources, kind: str, configured: int | None) -> int:
    """How many trials of this kind fit the cluster at once (a GPU-less cluster counts CPUs only)."""
    if configured:
        return configured
    total = ray.cluster_resources()
    return max(1, int(min(total.get(k, 0) // max(v, 1e-9) for k, v in demand(res, kind).items())))


class Dispatcher(Searcher):
    """Feeds Tune one job at a time, each as soon as every job it needs has finished.

    A Tune searcher is the hook Tune offers for choosing the next trial while others run: `suggest`
    returns a job whose inputs exist, None (Tune asks again later) while the remaining jobs wait for
    running ones, and FINISHED when none is left. Plan order (corpus, la, ba, ta, eval) sets the
    priority, no other job starts while a corpus job is pending or running, and
    each kind runs at most `limits[kind]` trials at once; a job whose input failed is not started.
    `failed` (job id -> why) is the sweep's map of failures, which the tracking callback fills as trials
    fail and this fills for the jobs they block; `reused` collects the jobs another driver finished.
    With a `capacity` (the cluster's CPUs/GPUs), jobs also go out only while the running ones leave room
    for them: a training trial holds no CPU itself, and without this, trials whose workers cannot be
    placed yet would pile up as idle processes. No capacity (an autoscaling cluster, which grows on
    demand): the per-kind limits alone.
    `claim(job)`, when given, is asked before a job goes out (tlr_ray/leases.py: another driver on the
    same storage root may be running it): "run" (ours now), "done" (another driver finished it: it counts
    as reused, and its dependants may go) or "wait" (another driver is running it: asked again later)."""

    RECHECK_S = 2.0  # how often a job that another driver runs is asked about again

    def __init__(self, todo: list[Job], limits: dict[str, int], failed: dict[str, str] | None = None,
                 reused: list[str] | None = None, capacity: dict[str, float] | None = None,
                 demands: dict[str, dict] | None = None, claim: Callable[[Job], str] | None = None):
        super().__init__()
        self.pending, self.limits = list(todo), limits
        self.failed = failed if failed is not None else {}
        self.reused = reused if reused is not None else []
        self.capacity, self.demands = capacity, demands or {}
        self.claim = claim
        self.elsewhere: dict[str, float] = {}             # job id -> when to ask `claim` again
        self.waiting_on = {j.id for j in todo}            # finished jobs leave this set
        self.running: dict[str, Job] = {}                 # Tune trial id -> job

    def fits(self, kind: str) -> bool:
        if self.capacity is None or not self.running:
            return True
        used: dict[str, float] = {}
        for job in self.running.values():
            for k, v in self.demands.get(job.kind, {}).items():
                used[k] = used.get(k, 0) + v
        return all(used.get(k, 0) + v <= self.capacity.get(k, 0) + 1e-9
                   for k, v in self.demands.get(kind, {}).items())

    def suggest(self, trial_id: str) -> dict | None:
        busy = [j.kind for j in self.running.values()]
        # Corpora first, all of them: a corpus that is empty, not UTF-8 or too short fails before any
        # GPU job starts (and the LAs need them anyway). Counted as the loop passes them (plan order puts
        # them first), not before it: a corpus that another driver finished leaves `pending` in this loop.
        corpora_left = "corpus" in busy
        for job in list(self.pending):
            if corpora_left and job.kind != "corpus":
                break
            if skip_blocked(job, self.failed):
                self.pending.remove(job)
                continue
            state = self.take(job, busy)
            if state is None:  # stays pending
                corpora_left = corpora_left or job.kind == "corpus"
                continue
            self.pending.remove(job)
            self.elsewhere.pop(job.id, None)
            if state == "done":
                self.reused.append(job.id)
                self.waiting_on.discard(job.id)
                continue
            self.running[trial_id] = job
            return {"job_id": job.id}
        if not self.pending:
            return Searcher.FINISHED
        if not self.running and not self.elsewhere:  # cannot happen in dependency order; never hang on it
            raise RuntimeError(f"jobs wait on jobs that are neither running nor planned: "
                               f"{[j.id for j in self.pending]}")
        return None

    def take(self, job: Job, busy: list[str]) -> str | None:
        """"run" or "done" (see `claim`) if `job` can go now; None while it waits (for its inputs, room,
        its kind's limit, or another driver)."""
        if (busy.count(job.kind) >= self.limits[job.kind] or self.waiting_on.intersection(job.needs)
                or not self.fits(job.kind) or self.elsewhere.get(job.id, 0) > time.monotonic()):
            return None
        state = self.claim(job) if self.claim else "run"
        if state == "wait":
            self.elsewhere[job.id] = time.monotonic() + self.RECHECK_S
            return None
        return state

    def __getstate__(self) -> dict:
        # Tune pickles its searcher into the experiment state; `claim` reaches the driver's leases and MLflow
        # client, which do not pickle, and a rerun starts from the artifacts anyway (`save`).
        return {**self.__dict__, "claim": None}

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: a rerun of the sweep finds its finished jobs by their artifacts."""

    def restore(self, checkpoint_path: str) -> None:
        """See `save`."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        job = self.running.pop(trial_id, None)
        if job is None:
            return
        if error:  # TrackingCallback records why; make sure dependants see it even if it runs later
            self.failed.setdefault(job.id, "failed")
        else:
            self.waiting_on.discard(job.id)

