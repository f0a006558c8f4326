"""What one trial does, and what the driver sees of it: a job as a Ray Tune trial (`job_trial`), its
training in Ray Train workers (`train_worker`, `ray_checkpoints`) or, for a job of one CPU worker, in the
trial's own process (`trains_in_trial`, `stored_checkpoints`), the driver-side callback that keeps
MLflow runs, leases and progress lines in step with the trials (`TrackingCallback`), and the sweep's
`Summary`. tlr_ray/execute.py (the sweep's Tune runs) and tlr_ray/search.py (a hyperparameter search)
both build on this module; it imports neither, nor tlr_ray/dispatch.py.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field

from ray import tune

from tlr_ray import artifacts
from tlr_ray import storage as store
from tlr_ray.config import Resources
from tlr_ray.leases import Leases
from tlr_ray.plan import Job
from tlr_ray.storage import join
from tlr_ray.tracking import Tracker, run_name

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


def stored_checkpoints(every: int | None, storage: str, run: str):
    """Checkpoints of a job that trains in its trial's process: the whole state in the job's run folder
    below the storage root (written whole, so never half a file), the live metrics to Tune. A retried
    trial, or a rerun after the driver died, loads it and resumes, as Ray Train's `get_checkpoint` does."""
    import io

    import torch

    from tlr_ray.train.context import Checkpoints
    state_file = store.StoreFile(storage, *TRAIN_RUNS, run, STATE_FILE)

    def load() -> dict | None:
        if not state_file.is_file():
            return None
        return torch.load(io.BytesIO(state_file.read_bytes()), map_location="cpu", weights_only=False)

    def save(state: dict, metrics: dict) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        state_file.write_bytes(buffer.getvalue())
        tune.report({LIVE + k: v for k, v in _numeric(metrics).items()})

    return Checkpoints(every=every, load=load, save=save)


def trains_in_trial(res: Resources, ray_train: str = "auto") -> bool:
    """Whether a training job runs in its trial's own process instead of a Ray Train worker group.
    Starting a worker group costs about 20 s per job on 2 cores whatever the job's size (Ray Train's
    controller, placement-group cleaner and preemption watcher, and the worker: each a new process that
    imports Ray Train, the worker also torch, transformers and adapters; benchmarks/overhead.py), while a
    trial's process is reused from job to job (Tune's reuse_actors) and has all of it imported already.
    A job of one CPU worker gains nothing from a worker group, so it trains in the trial ("auto"); GPU and
    data-parallel jobs keep Ray Train (device placement, DDP, worker restarts), as does every job with
    `execution.ray_train: always`."""
    return ray_train == "auto" and res.num_workers == 1 and not res.use_gpu


def trial_holds(res: Resources, kind: str, ray_train: str = "auto") -> dict:
    """What one trial of this kind holds while it runs: a training trial in Ray Train next to nothing (its
    workers hold the CPUs/GPUs); a corpus or eval job, or a job that trains in its trial, its one worker's."""
    if kind not in ("eval", "corpus") and not trains_in_trial(res, ray_train):
        return DRIVER_RESOURCES
    return {"CPU": res.cpus_per_worker, **res.custom, "GPU": (res.gpus_per_worker or 1) if res.use_gpu else 0}


TRAIN_RUNS = ("ray", "train")  # below the storage root: Ray Train's run folders, one per training job


def job_trial(config: dict, jobs: dict[str, Job], storage: str, precision: str, resources: dict[str, Resources],
              checkpoint_every: int | None = None, max_failures: int = 0, train_run: str | None = None,
              ray_train: str = "auto") -> None:
    """One Tune trial = one job. `train_run`: the name of the job's run folder (its checkpoints), by default
    the job id (see below). Its last report says where the trial's time went (`time_*`,
    benchmarks/overhead.py)."""
    entered = time.time()  # wall clock: comparable with the driver's and the Train workers' clocks
    from tlr_ray.runner import run_job, timings
    from tlr_ray.train.context import JobContext
    quiet_libraries()
    times = {"time_trial_entered": entered, "time_trial_imports_s": time.time() - entered}
    job = jobs[config["job_id"]]
    res = resources[job.kind]  # resources per job kind
    t0 = time.perf_counter()
    if job.kind == "corpus":  # CPU work in the trial itself: its tokenizer processes use its CPUs
        times.update(timings(run_job(job, storage, JobContext(
            device="cpu", cpus=max(1, int(res.cpus_per_worker)), progress=False,
            report=lambda m: tune.report({LIVE + k: v for k, v in _numeric(m).items()})))))
    elif job.kind == "eval":
        import torch
        device = torch.device("cuda" if res.use_gpu and torch.cuda.is_available() else "cpu")
        times.update(timings(run_job(job, storage, JobContext(device=device, precision=precision, progress=False))))
    elif trains_in_trial(res, ray_train):
        times.update(timings(run_job(job, storage, JobContext(
            precision=precision, progress=False,
            report=lambda m: tune.report({LIVE + k: v for k, v in _numeric(m).items()}),
            checkpoints=stored_checkpoints(checkpoint_every, storage, train_run or job.id)))))
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
        timing_file = [*TRAIN_RUNS, train_run or job.id, "timings.json"]  # the worker's phase times
        trainer = TorchTrainer(
            train_worker, train_loop_config={"job": job, "storage": storage, "precision": precision,
                                             "checkpoint_every": checkpoint_every,
                                             "started": time.time(), "timings": timing_file},
            scaling_config=ScalingConfig(num_workers=res.num_workers, use_gpu=res.use_gpu,
                                         resources_per_worker=per_worker),
            # Named by the job id, not the trial: a retried trial, or a rerun of the sweep after its
            # driver died, finds the same run folder and resumes from its last checkpoint.
            run_config=RunConfig(name=train_run or job.id, storage_path=join(storage, *TRAIN_RUNS),
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
    manifest = artifacts.verify(storage, job.id)
    if manifest is None:
        raise RuntimeError(f"job {job.id} finished without an intact artifact")
    if job.kind not in ("eval", "corpus"):
        # The artifact is published: its checkpoints are spent.
        store.remove(storage, *TRAIN_RUNS, train_run or job.id)
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
                self.say(f"  ... {run_name(job)}: run by another driver ({who.get('what') or 'a sweep'} on "
                         f"{who.get('host', '?')}, pid {who.get('pid', '?')}); waiting for it")
            return "wait"
        manifest = artifacts.verify(self.storage, job.id)
        if manifest is None:
            return "run"
        self.tracker.ensure_logged(job, manifest, artifacts.location(self.storage, job.id))
        self.leases.release(job.id)
        self.finished.add(job.id)
        self.say(f"  [{self.done}/{self.total}] {run_name(job)}: done by another driver, reused")
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
            self.say(f"  ... {run_name(self.job_for(trial))}: {100 * live['prepared']:.0f}% prepared{rate}{eta}")
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
        self.say(f"  [{self.done}/{self.total}] {run_name(job)}: {shown}")
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
        self.say(f"  [{self.done}/{self.total}] FAILED {run_name(job)}: {why}")
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
