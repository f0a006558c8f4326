"""Run a plan on Ray: each job is a Ray Tune trial; a training trial runs its recipe in Ray Train workers
(`TorchTrainer`, one or more, CPU or GPU), or in the trial itself when it is one CPU worker
(tlr_ray/trial.py `trains_in_trial`); corpus and eval trials run in the trial itself.

A job whose artifact exists and verifies is not run again: that is how a sweep resumes.
Scheduling: one Tune run per sweep (two when a hyperparameter search sits between the adapter stages);
the `Dispatcher` (tlr_ray/dispatch.py) hands Tune a job as soon as the jobs it needs have finished,
so a TA starts when its LAs exist, not when every LA of the sweep does, and evals follow each TA. Jobs go out in
plan order (LAs, BAs, TAs, evals), within limits per kind and what the cluster holds (docs/architecture.md).
Fault tolerance: a training job checkpoints (through Ray Train, or itself in its trial) and resumes from
its last checkpoint when a Train worker dies (Train's FailureConfig) or its trial is retried (Tune's).
"""
from __future__ import annotations

import contextlib
import logging
import os
import time

import ray
from ray import tune

from tlr_ray import artifacts
from tlr_ray.config import Sweep
from tlr_ray.dispatch import Dispatcher, concurrency, demand, skip_blocked
from tlr_ray.leases import Leases
from tlr_ray.plan import Job, Plan, plan_sweep
from tlr_ray.storage import join
from tlr_ray.tracking import Tracker, run_name
from tlr_ray.trial import Summary, TrackingCallback, job_trial, trial_holds
from tlr_ray.tune_patches import idle_trials_released, tune_keeps_stepping, tune_releases_idle_trials

log = logging.getLogger("tlr_ray")
def connect(verbose: bool = False) -> None:
    """Join the cluster named by RAY_ADDRESS (or the one `ray job submit` runs us on), else start one.
    Worker logs reach this terminal only with `verbose`: our progress lines say what happens, and a
    failed job's error is printed from Tune's error file. Everything stays in Ray's log folder."""
    if not verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's classic reporter honours verbose=0
    quiet_worker_pool_warnings()
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, log_to_driver=verbose,
                 logging_level=logging.WARNING, configure_logging=True)


def quiet_worker_pool_warnings() -> None:
    """Ray's raylet prints "N PYTHON worker processes have been started ... 4x the maximum expected
    startup concurrency" through the driver whenever Ray Train starts its helper actors: expected here
    (each training job starts several), harmless, and it would break up the live display. Those lines
    go to the log; every other message Ray sends the driver is printed as before."""
    from ray._private import worker
    show = getattr(worker, "print_to_stdstream", None)
    if show is None or getattr(show, "_tlr_ray", False):
        return

    def filtered(data, *args, **kwargs):
        lines = [ln for ln in data.get("lines", []) if "PYTHON worker processes have been started" not in ln]
        if len(lines) < len(data.get("lines", [])):
            log.debug("ray: %s", data.get("lines"))
        if lines:
            show({**data, "lines": lines}, *args, **kwargs)
    filtered._tlr_ray = True
    worker.print_to_stdstream = filtered


def trial_resources(sweep: Sweep, kinds: dict[str, str]):
    """Per trial, by its job's kind (tlr_ray/trial.py `trial_holds`)."""
    def resources(config: dict) -> dict:
        kind = kinds[config["job_id"]]
        return trial_holds(sweep.resources(kind), kind, sweep.config.execution.ray_train)
    return resources


def run_jobs(sweep: Sweep, todo: list[Job], storage: str, tracker: Tracker, summary: Summary, label: str,
             leases: Leases | None = None) -> None:
    """Run `todo` (in dependency order) as one Tune run. A Ctrl-C ends Tune's run early (Tune stops the
    running trials); then `summary.interrupted` is set."""
    ex = sweep.config.execution
    kinds = {j.id: j.kind for j in todo}
    limits = {kind: concurrency(sweep.resources(kind), kind, ex.max_concurrent_trials) for kind in set(kinds.values())}
    demands = {kind: demand(sweep.resources(kind), kind) for kind in limits}
    # A configured max_concurrent_trials means "the cluster grows": do not hold jobs back to its size now.
    capacity = None if ex.max_concurrent_trials else ray.cluster_resources()
    trainable = tune.with_parameters(
        job_trial, jobs={j.id: j for j in todo}, storage=storage, precision=ex.precision,
        resources={kind: sweep.resources(kind) for kind in limits},
        checkpoint_every=ex.checkpoint_every, max_failures=ex.max_failures, ray_train=ex.ray_train)
    tracking = TrackingCallback(tracker, {j.id: j for j in todo}, storage, summary, len(todo), leases=leases)
    dispatcher = Dispatcher(todo, limits, summary.failed, summary.reused, capacity, demands, claim=tracking.claim)
    tuner = tune.Tuner(
        tune.with_resources(trainable, trial_resources(sweep, kinds)),
        # max_concurrent_trials wraps the Dispatcher in a ConcurrencyLimiter, which is what lets Tune
        # keep several trials pending (with a bare searcher it asks for the next only once the last one
        # has started); the Dispatcher's own limits stay the binding ones.
        tune_config=tune.TuneConfig(search_alg=dispatcher,
                                    num_samples=len(todo), max_concurrent_trials=sum(limits.values()),
                                    reuse_actors=idle_trials_released()),
        run_config=tune.RunConfig(
            name=f"{sweep.name}-{label}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",  # two drivers, one root
            storage_path=join(storage, "ray"), verbose=0,
            # A trial whose process died (not a worker: Ray Train handles those) is started again and
            # resumes from its job's checkpoints.
            failure_config=tune.FailureConfig(max_failures=ex.max_failures),
            callbacks=[tracking]))
    with (live_display(todo, tracking), tune_interrupt_messages_hidden(), tune_keeps_stepping(),
          tune_releases_idle_trials()):
        tuner.fit()
    summary.interrupted = summary.interrupted or bool(tracking.open_trials() or dispatcher.pending)


class _TuneResumeHint(logging.Filter):
    """Tune's own advice after a Ctrl-C (Tuner.restore(...)) is not how a sweep resumes: rerunning the
    same command is, and the driver says so."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (text.startswith("Experiment has been interrupted") or text.startswith("Trials did not complete"))


@contextlib.contextmanager
def tune_interrupt_messages_hidden():
    logger, hint = logging.getLogger("ray.tune.tune"), _TuneResumeHint()
    logger.addFilter(hint)
    try:
        yield
    finally:
        logger.removeFilter(hint)


def live_display(todo: list[Job], tracking: TrackingCallback):
    """The running jobs' step/total, loss, rate and ETA, and the sweep's, while Tune runs
    (tlr_ray/progress.py): a tqdm bar on a terminal, a status line every 30 s elsewhere."""
    from tlr_ray.progress import BOARD, Board, Display
    board = Board.options(name=BOARD, get_if_exists=True).remote()
    planned = {j.id: j.spec.args.max_steps for j in todo if getattr(j.spec, "args", None) and j.spec.args.max_steps}
    tracking.display = Display(board, len(todo), {j.id: run_name(j) for j in todo}, planned, lambda: tracking.done)
    return tracking.display


def execute(sweep: Sweep, plan: Plan, storage: str, tracker: Tracker, verbose: bool = False) -> Summary:
    summary, t0 = Summary(), time.perf_counter()
    connect(verbose)
    leases = Leases(storage, what=f"sweep {sweep.name}")  # released in `finally`, whatever ends the run
    try:
        run_phases(sweep, plan, storage, tracker, summary, leases)
    finally:
        leases.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def run_phases(sweep: Sweep, plan: Plan, storage: str, tracker: Tracker, summary: Summary, leases: Leases) -> None:
    # A search chooses the TA arguments, so the TAs (and evals) are planned only after it: the sweep
    # then runs as two Tune runs, adapters first. Otherwise it is one.
    phases = [("corpus", "la", "ba"), ("ta", "eval")] if sweep.config.search else [("corpus", "la", "ba", "ta", "eval")]
    for kinds in phases:
        if summary.interrupted:
            return
        if "ta" in kinds and sweep.config.search and not summary.failed:
            from tlr_ray.search import run_search
            sweep = run_search(sweep, storage, tracker, summary)
            plan = plan_sweep(sweep)  # TA and eval jobs change with the chosen arguments
        todo = []
        for job in (j for kind in kinds for j in plan.of_kind(kind)):
            manifest = artifacts.verify(storage, job.id)
            if manifest is not None:
                if leases.holder(job.id) is None:  # else its driver is logging it right now
                    tracker.ensure_logged(job, manifest, artifacts.location(storage, job.id))
                summary.reused.append(job.id)
            elif not skip_blocked(job, summary.failed):
                todo.append(job)
        kinds = [k for k in kinds if plan.of_kind(k)]
        label = "+".join(kinds)
        print(f"[{label}] to run: {', '.join(f'{sum(j.kind == k for j in todo)} {k}' for k in kinds)}; "
              f"{sum(len(plan.of_kind(k)) for k in kinds) - len(todo)} already done", flush=True)
        if todo:
            t_run = time.perf_counter()
            run_jobs(sweep, todo, storage, tracker, summary, label.replace("+", "-"), leases)
            print(f"[{label}] took {time.perf_counter() - t_run:.0f} s", flush=True)
