"""Run a plan on Ray: each job is a Ray Tune trial; a training trial runs its recipe in Ray Train workers
(`TorchTrainer`, one or more, CPU or GPU); an eval trial runs in the trial itself.

A job whose artifact exists and verifies is not run again: that is how a sweep resumes.
Scheduling: one Tune run per sweep (two when a hyperparameter search sits between the adapter stages);
the `Dispatcher` (tlr_ray/dispatch.py) hands Tune a job as soon as the jobs it needs have finished,
so a TA starts when its LAs exist, not when every LA of the sweep does, and evals follow each TA. Jobs go out in
plan order (LAs, BAs, TAs, evals), within limits per kind and what the cluster holds (docs/architecture.md).
Fault tolerance: a training job checkpoints through Ray Train and resumes from its last checkpoint
when a worker dies (Train's FailureConfig) or its trial is retried (Tune's FailureConfig).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field

import ray
from ray import tune

from tlr_ray import artifacts
from tlr_ray import storage as store
from tlr_ray.config import Resources, Sweep
from tlr_ray.dispatch import Dispatcher, concurrency, demand
from tlr_ray.leases import Leases
from tlr_ray.plan import Job, Plan, plan_sweep
from tlr_ray.storage import join
from tlr_ray.tracking import Tracker

log = logging.getLogger("tlr_ray")
LIVE = "live/"  # prefix of metrics reported during training (the rest of a Tune result is Tune's own)
STATE_FILE = "training_state.pt"  # inside a Ray Train checkpoint: tlr_ray.train.loop's whole state
# What a training trial itself holds while its Ray Train workers do the work: a little memory and no
# CPU, so that N one-CPU workers fit N CPUs (Ray refuses an empty resource request).
DRIVER_RESOURCES = {"CPU": 0, "memory": 64 * 2**20}


@dataclass
class Summary:
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)   # job id -> why
    seconds: float = 0.0
    trial_seconds: dict[str, float] = field(default_factory=dict)  # job id -> its trial, start to end
    train_seconds: dict[str, float] = field(default_factory=dict)  # job id -> its training loop alone
    interrupted: bool = False  # Ctrl-C (SIGINT): Tune stopped the running trials; a rerun resumes

    def overhead(self) -> str:
        """Where the wall time went: the jobs' trials, and within them the training loops. The rest of a
        trial is Ray Train's worker start, imports and model loading; the rest of the wall time is
        Ray/Tune start-up, scheduling, waiting on dependencies and MLflow logging."""
        trials, train = sum(self.trial_seconds.values()), sum(self.train_seconds.values())
        return (f"time: {self.seconds:.0f} s wall; trials {trials:.0f} s summed, of which training loops "
                f"{train:.0f} s ({100 * train / max(trials, 1e-9):.0f}%); "
                f"training loops / wall = {train / max(self.seconds, 1e-9):.2f}")


def quiet_libraries() -> None:
    """Keep worker logs readable: the libraries warn about things that are expected here."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    logging.getLogger("adapters").setLevel(logging.ERROR)


def _numeric(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def train_worker(config: dict) -> None:
    """Ray Train's per-worker function: one data-parallel worker of an LA, BA or TA job."""
    entered = time.time()  # wall clock, as the trial's `started`: how long the worker group took to start
    import ray.train
    import ray.train.torch

    from tlr_ray.runner import run_job, timings
    from tlr_ray.train.context import JobContext
    quiet_libraries()
    times = {"time_worker_start_s": entered - config["started"], "time_worker_imports_s": time.time() - entered} \
        if "started" in config else {}
    rctx = ray.train.get_context()
    world = rctx.get_world_size()
    ctx = JobContext(
        device=ray.train.torch.get_device(), precision=config["precision"], rank=rctx.get_world_rank(),
        world_size=world, progress=False,
        report=lambda m: ray.train.report({LIVE + k: v for k, v in _numeric(m).items()}),
        wrap=(lambda model: ray.train.torch.prepare_model(model, move_to_device=False)) if world > 1
        else (lambda model: None),
        checkpoints=ray_checkpoints(config["checkpoint_every"], rctx.get_world_rank()))
    metrics = run_job(config["job"], config["storage"], ctx)
    if ctx.rank == 0 and config.get("timings"):  # where the time went, for the trial's last report (one small file)
        try:
            store.StoreFile(config["storage"], *config["timings"]).write_text(json.dumps({**times, **timings(metrics)}))
        except Exception as e:  # noqa: BLE001  only informative: never fails a published job
            log.warning("could not write the job's timings: %s", e)


def ray_checkpoints(every: int | None, rank: int):
    """Checkpoints kept by Ray Train in the run's storage: rank 0 saves the state, every rank reports
    (Ray Train requires that), and after a restart `get_checkpoint()` hands back the latest."""
    import tempfile

    import ray.train
    import torch

    from tlr_ray.train.context import Checkpoints

    def load() -> dict | None:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return torch.load(os.path.join(folder, STATE_FILE), map_location="cpu", weights_only=False)

    def save(state: dict, metrics: dict) -> None:
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if rank == 0:
                torch.save(state, os.path.join(folder, STATE_FILE))
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report({LIVE + k: v for k, v in _numeric(metrics).items()}, checkpoint=checkpoint)

    return Checkpoints(every=every, load=load, save=save)


TRAIN_RUNS = ("ray", "train")  # below the storage root: Ray Train's run folders, one per training job


def job_trial(config: dict, jobs: dict, storage: str, precision: str, resources: dict[str, dict],
              checkpoint_every: int | None = None, max_failures: int = 0, train_run: str | None = None) -> None:
    """One Tune trial = one job. `train_run`: the Ray Train run's name, by default the job id (see below).
    Its last report says where the trial's time went (`time_*`, benchmarks/overhead.py)."""
    entered = time.time()  # wall clock: comparable with the driver's and the Train workers' clocks
    from tlr_ray.runner import run_job, timings
    from tlr_ray.train.context import JobContext
    quiet_libraries()
    times = {"time_trial_entered": entered, "time_trial_imports_s": time.time() - entered}
    job = jobs[config["job_id"]]
    res = Resources(**resources[job["kind"]])  # resources per job kind
    t0 = time.perf_counter()
    if job["kind"] == "corpus":  # CPU work in the trial itself: its tokenizer processes use its CPUs
        times.update(timings(run_job(job, storage, JobContext(
            device="cpu", cpus=max(1, int(res.cpus_per_worker)), progress=False,
            report=lambda m: tune.report({LIVE + k: v for k, v in _numeric(m).items()})))))
    elif job["kind"] == "eval":
        import torch
        device = torch.device("cuda" if res.use_gpu and torch.cuda.is_available() else "cpu")
        times.update(timings(run_job(job, storage, JobContext(device=device, precision=precision, progress=False))))
    else:
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
        from ray.tune.integration.ray_train import TuneReportCallback
        # Ray Train's controller notices a finished worker group only at its next poll (default every 2 s):
        # measured on 2 cores, a 1-worker TorchTrainer.fit() of a no-op took 10.3-14.6 s with 2 s and
        # 7.3-11.2 s with 0.2 s. 0.5 s keeps most of that gain. Set in the trial process, which builds the
        # TorchTrainer: Ray Train passes it on to its controller
        # (ray.train.v2._internal.constants.ENV_VARS_TO_PROPAGATE).
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
        per_worker = {"CPU": res.cpus_per_worker, **res.custom}
        if res.use_gpu:
            per_worker["GPU"] = res.gpus_per_worker or 1
        timing_file = [*TRAIN_RUNS, train_run or job["id"], "timings.json"]  # the worker's phase times
        trainer = TorchTrainer(
            train_worker, train_loop_config={"job": job, "storage": storage, "precision": precision,
                                             "checkpoint_every": checkpoint_every,
                                             "started": time.time(), "timings": timing_file},
            scaling_config=ScalingConfig(num_workers=res.num_workers, use_gpu=res.use_gpu,
                                         resources_per_worker=per_worker),
            # Named by the job id, not the trial: a retried trial, or a rerun of the sweep after its
            # driver died, finds the same run folder and resumes from its last checkpoint.
            run_config=RunConfig(name=train_run or job["id"], storage_path=join(storage, *TRAIN_RUNS),
                                 failure_config=FailureConfig(max_failures=max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=1),
                                 callbacks=[TuneReportCallback()]))
        fitting = time.perf_counter()
        trainer.fit()
        times["time_fit_s"] = time.perf_counter() - fitting
        try:  # written by the rank-0 worker (train_worker); the folder goes with the checkpoints below
            times.update(json.loads(store.StoreFile(storage, *timing_file).read_text()))
        except Exception as e:  # noqa: BLE001  only informative: the report goes without them
            log.debug("no timings from the Train worker: %s", e)
    verifying = time.perf_counter()
    manifest = artifacts.verify(storage, job["id"])
    if manifest is None:
        raise RuntimeError(f"job {job['id']} finished without an intact artifact")
    if job["kind"] not in ("eval", "corpus"):
        # The artifact is published: its checkpoints are spent.
        store.remove(storage, *TRAIN_RUNS, train_run or job["id"])
    times["time_verify_s"] = time.perf_counter() - verifying
    final = _numeric(manifest["metrics"])
    best = [v for k, v in final.items() if k.startswith("validation_")]  # a TA's selection score
    tune.report({"done_job": 1, "job_seconds": time.perf_counter() - t0, **final, **times,
                 **({LIVE + "best_score": best[0]} if best else {})})


class TrackingCallback(tune.Callback):
    """Driver side: MLflow runs follow the trials, and one progress line per finished job. With `leases`
    (tlr_ray/leases.py), `claim` takes a job's lease before its trial starts and the lease is released
    once the job's run is logged, so another driver on the same storage root reuses it instead."""

    def __init__(self, tracker: Tracker, jobs: dict[str, Job], storage: str, summary: Summary, total: int,
                 tags: dict | None = None, leases: Leases | None = None):
        self.tracker, self.jobs, self.storage, self.summary, self.total = tracker, jobs, storage, summary, total
        self.tags, self.leases = tags or {}, leases
        self.runs: dict[str, str | None] = {}
        self.ended: set[str] = set()  # trials completed or failed (the others were running at a Ctrl-C)
        self.finished: set[str] = set()  # jobs ended here, counted once (a trial Tune retried ends twice)
        self.waiting: set[str] = set()  # jobs seen running in another driver (said once)
        self.display = None  # the live view (tlr_ray/progress.py), when the sweep shows one

    def claim(self, job: Job) -> str:
        """For the Dispatcher: "run", "done" (another driver finished it) or "wait" (another runs it)."""
        if self.leases is None:
            return "run"
        if not self.leases.acquire(job.id):
            if job.id not in self.waiting:
                self.waiting.add(job.id)
                who = self.leases.holder(job.id) or {}
                self.say(f"  ... {_label(job)}: run by another driver ({who.get('what') or 'a sweep'} on "
                         f"{who.get('host', '?')}, pid {who.get('pid', '?')}); waiting for it")
            return "wait"
        manifest = artifacts.verify(self.storage, job.id)
        if manifest is None:
            return "run"
        self.tracker.ensure_logged(job, manifest, artifacts.location(self.storage, job.id))
        self.leases.release(job.id)
        self.finished.add(job.id)
        self.say(f"  [{self.done}/{self.total}] {_label(job)}: done by another driver, reused")
        return "done"

    @property
    def done(self) -> int:
        return len(self.finished)

    def open_trials(self) -> list[str]:
        return [t for t in self.runs if t not in self.ended]

    def say(self, text: str) -> None:
        (self.display.write if self.display else lambda t: print(t, flush=True))(text)

    def job_for(self, trial) -> Job:
        return self.jobs[trial.config["job_id"]]

    def on_trial_start(self, iteration, trials, trial, **info):
        run_id = self.runs[trial.trial_id] = self.tracker.start_job(self.job_for(trial))
        if self.display:
            self.display.job_started(self.job_for(trial).id)
        if run_id and self.tags:
            self.tracker.tag_run(run_id, self.tags)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self.runs.get(trial.trial_id)
        live = {k[len(LIVE):]: v for k, v in result.items() if k.startswith(LIVE)}
        if run_id and live:
            step = int(live.pop("step", 0))
            self.tracker.log_live(run_id, live, step)
        if "prepared" in live:  # a corpus job's progress (at most every 10 s): the long CPU work of a sweep
            eta = f", ETA {live['eta_seconds']:.0f} s" if "eta_seconds" in live else ""
            rate = next((f", {v:,.1f} {k[:-6]}/s" for k, v in live.items() if k.endswith("_per_s")), "")
            self.say(f"  ... {_label(self.job_for(trial))}: {100 * live['prepared']:.0f}% prepared{rate}{eta}")
        if "job_seconds" in result:
            self.summary.trial_seconds[self.job_for(trial).id] = result["job_seconds"]

    def on_trial_complete(self, iteration, trials, trial, **info):
        job = self.job_for(trial)
        manifest = artifacts.verify(self.storage, job.id)
        run_id = self.runs.get(trial.trial_id)
        self.finished.add(job.id)
        self.ended.add(trial.trial_id)
        if manifest is None:
            self._failed(job, run_id, "no intact artifact after the trial")
            return
        if run_id:
            self.tracker.finish_job(job, run_id, manifest, artifacts.location(self.storage, job.id))
        if self.leases:
            self.leases.release(job.id)  # after the run is logged: a waiting driver then finds both
        self.summary.ran.append(job.id)
        if "train_seconds" in manifest["metrics"]:
            self.summary.train_seconds[job.id] = manifest["metrics"]["train_seconds"]
        shown = {k: round(v, 2) for k, v in _numeric(manifest["metrics"]).items()
                 if k not in ("steps", "best_step", "train_seconds", "examples") and not k.startswith("time_")
                 and (v or k != "resumed_from_step")}
        self.say(f"  [{self.done}/{self.total}] {_label(job)}: {shown}")
        if self.display:
            self.display.job_ended(job.id)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.finished.add(self.job_for(trial).id)
        self.ended.add(trial.trial_id)
        self._failed(self.job_for(trial), self.runs.get(trial.trial_id), _error_text(trial))

    def _failed(self, job: Job, run_id: str | None, why: str) -> None:
        self.summary.failed[job.id] = why
        if run_id:
            self.tracker.fail_job(run_id, why)
        if self.leases:
            self.leases.release(job.id)  # another driver may try it again
        self.say(f"  [{self.done}/{self.total}] FAILED {_label(job)}: {why}")
        if self.display:
            self.display.job_ended(job.id)


def _error_text(trial) -> str:
    """The last line of the trial's error (the exception), and where the full traceback is."""
    path = getattr(trial, "error_file", None) or ""
    try:
        lines = [ln for ln in open(path).read().splitlines() if ln.strip()]
        return f"{lines[-1].strip()} (traceback: {path})"
    except (OSError, IndexError):
        return f"trial failed; see {trial.local_path or 'the Ray logs'}"


def _label(job: Job) -> str:
    from tlr_ray.tracking import run_name
    return run_name(job)


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


def own_cluster() -> bool:
    """Whether this driver started the Ray cluster it runs on (no other driver can be on it). Only then do
    trials reuse their processes (Tune's `reuse_actors`: an eval trial skips re-importing torch): Tune
    keeps one finished trial's process idle for the next trial, and that process keeps its CPU/GPU. On a
    shared cluster another driver's job may be waiting for exactly that CPU/GPU while this driver waits
    for that job's lease (tlr_ray/leases.py): two drivers of one sweep on a one-CPU cluster deadlocked so
    (tests/test_driver_faults.py, two drivers)."""
    node = getattr(ray._private.worker, "_global_node", None)  # no public API says who started the cluster
    return bool(getattr(node, "head", False))


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
    """Per trial: a training trial holds next to nothing while its Ray Train workers hold the CPUs/GPUs;
    an eval trial does the work itself."""
    def resources(config: dict) -> dict:
        kind = kinds[config["job_id"]]
        if kind not in ("eval", "corpus"):
            return DRIVER_RESOURCES
        res = sweep.resources(kind)
        return {"CPU": res.cpus_per_worker, **res.custom, "GPU": (res.gpus_per_worker or 1) if res.use_gpu else 0}
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
        job_trial, jobs={j.id: asdict(j) for j in todo}, storage=storage, precision=ex.precision,
        resources={kind: asdict(sweep.resources(kind)) for kind in limits},
        checkpoint_every=ex.checkpoint_every, max_failures=ex.max_failures)
    tracking = TrackingCallback(tracker, {j.id: j for j in todo}, storage, summary, len(todo), leases=leases)
    dispatcher = Dispatcher(todo, limits, summary, capacity, demands, claim=tracking.claim)
    tuner = tune.Tuner(
        tune.with_resources(trainable, trial_resources(sweep, kinds)),
        # max_concurrent_trials wraps the Dispatcher in a ConcurrencyLimiter, which is what lets Tune
        # keep several trials pending (with a bare searcher it asks for the next only once the last one
        # has started); the Dispatcher's own limits stay the binding ones.
        tune_config=tune.TuneConfig(search_alg=dispatcher,
                                    num_samples=len(todo), max_concurrent_trials=sum(limits.values()),
                                    reuse_actors=own_cluster()),
        run_config=tune.RunConfig(
            name=f"{sweep.name}-{label}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",  # two drivers, one root
            storage_path=join(storage, "ray"), verbose=0,
            # A trial whose process died (not a worker: Ray Train handles those) is started again and
            # resumes from its job's checkpoints.
            failure_config=tune.FailureConfig(max_failures=ex.max_failures),
            callbacks=[tracking]))
    with live_display(todo, tracking), tune_interrupt_messages_hidden():
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
    planned = {j.id: j.spec["args"]["max_steps"] for j in todo
               if j.kind in ("la", "ba", "ta") and (j.spec.get("args") or {}).get("max_steps")}
    tracking.display = Display(board, len(todo), {j.id: _label(j) for j in todo}, planned, lambda: tracking.done)
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
            elif blocked := [n for n in job.needs if n in summary.failed]:
                summary.failed[job.id] = f"needs {', '.join(blocked)}, which failed"
            else:
                todo.append(job)
        kinds = [k for k in kinds if plan.of_kind(k)]
        label = "+".join(kinds)
        print(f"[{label}] to run: {', '.join(f'{sum(j.kind == k for j in todo)} {k}' for k in kinds)}; "
              f"{sum(len(plan.of_kind(k)) for k in kinds) - len(todo)} already done", flush=True)
        if todo:
            t_run = time.perf_counter()
            run_jobs(sweep, todo, storage, tracker, summary, label.replace("+", "-"), leases)
            print(f"[{label}] took {time.perf_counter() - t_run:.0f} s", flush=True)
