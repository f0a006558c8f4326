"""Run a plan on Ray: each stage's jobs are Ray Tune trials; a training trial runs its recipe in Ray Train
workers (`TorchTrainer`, one or more, CPU or GPU); an eval trial runs in the trial itself.

A job whose artifact exists and verifies is not run again: that is how a sweep resumes. Stages run in
dependency order (la -> ta -> eval); within a stage Tune runs as many trials at once as the cluster fits.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field

import ray
from ray import tune

from tlr_ray import artifacts
from tlr_ray.config import Resources, Sweep
from tlr_ray.plan import KINDS, Job, Plan, plan_sweep
from tlr_ray.tracking import Tracker

log = logging.getLogger("tlr_ray")
LIVE = "live/"
# What a training trial itself holds while its Ray Train workers do the work: a little memory and no
# CPU, so that N one-CPU workers fit N CPUs (Ray refuses an empty resource request).
DRIVER_RESOURCES = {"CPU": 0, "memory": 64 * 2**20}  # prefix of metrics reported during training (the rest of a Tune result is Tune's own)


@dataclass
class Summary:
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)   # job id -> why
    seconds: float = 0.0
    trial_seconds: dict[str, float] = field(default_factory=dict)  # job id -> time inside its recipe


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
    """Ray Train's per-worker function: one data-parallel worker of an LA or TA job."""
    import ray.train
    import ray.train.torch

    from tlr_ray.runner import run_job
    from tlr_ray.train.context import JobContext
    quiet_libraries()
    rctx = ray.train.get_context()
    world = rctx.get_world_size()
    ctx = JobContext(
        device=ray.train.torch.get_device(), precision=config["precision"], rank=rctx.get_world_rank(),
        world_size=world, progress=False,
        report=lambda m: ray.train.report({LIVE + k: v for k, v in _numeric(m).items()}),
        wrap=(lambda model: ray.train.torch.prepare_model(model, move_to_device=False)) if world > 1
        else (lambda model: None))
    run_job(config["job"], config["storage"], ctx)


def job_trial(config: dict, jobs: dict, storage: str, precision: str, resources: dict) -> None:
    """One Tune trial = one job."""
    from tlr_ray.runner import run_job
    from tlr_ray.train.context import JobContext
    quiet_libraries()
    job = jobs[config["job_id"]]
    t0 = time.perf_counter()
    if job["kind"] == "eval":
        import torch
        device = torch.device("cuda" if resources.get("use_gpu") and torch.cuda.is_available() else "cpu")
        run_job(job, storage, JobContext(device=device, precision=precision, progress=False))
    else:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
        from ray.tune.integration.ray_train import TuneReportCallback
        res = Resources(**resources)
        per_worker = {"CPU": res.cpus_per_worker, **res.custom}
        if res.use_gpu:
            per_worker["GPU"] = res.gpus_per_worker or 1
        trainer = TorchTrainer(
            train_worker, train_loop_config={"job": job, "storage": storage, "precision": precision},
            scaling_config=ScalingConfig(num_workers=res.num_workers, use_gpu=res.use_gpu,
                                         resources_per_worker=per_worker),
            run_config=RunConfig(name=f"{job['id']}-{tune.get_context().get_trial_id()}",
                                 storage_path=os.path.join(storage, "ray"),
                                 callbacks=[TuneReportCallback()]))
        trainer.fit()
    manifest = artifacts.verify(storage, job["id"])
    if manifest is None:
        raise RuntimeError(f"job {job['id']} finished without an intact artifact")
    final = _numeric(manifest["metrics"])
    best = [v for k, v in final.items() if k.startswith("validation_")]  # a TA's selection score
    tune.report({"done_job": 1, "job_seconds": time.perf_counter() - t0, **final,
                 **({LIVE + "best_score": best[0]} if best else {})})


class TrackingCallback(tune.Callback):
    """Driver side: MLflow runs follow the trials, and one progress line per finished job."""

    def __init__(self, tracker: Tracker, jobs: dict[str, Job], storage: str, summary: Summary, total: int,
                 tags: dict | None = None):
        self.tracker, self.jobs, self.storage, self.summary, self.total = tracker, jobs, storage, summary, total
        self.tags = tags or {}
        self.runs: dict[str, str | None] = {}
        self.done = 0

    def job_for(self, trial) -> Job:
        return self.jobs[trial.config["job_id"]]

    def on_trial_start(self, iteration, trials, trial, **info):
        run_id = self.runs[trial.trial_id] = self.tracker.start_job(self.job_for(trial))
        for k, v in self.tags.items():
            if run_id:
                self.tracker.client.set_tag(run_id, k, v)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self.runs.get(trial.trial_id)
        live = {k[len(LIVE):]: v for k, v in result.items() if k.startswith(LIVE)}
        if run_id and live:
            step = int(live.pop("step", 0))
            self.tracker.log_live(run_id, live, step)
        if "job_seconds" in result:
            self.summary.trial_seconds[self.job_for(trial).id] = result["job_seconds"]

    def on_trial_complete(self, iteration, trials, trial, **info):
        job = self.job_for(trial)
        manifest = artifacts.verify(self.storage, job.id)
        run_id = self.runs.get(trial.trial_id)
        self.done += 1
        if manifest is None:
            self._failed(job, run_id, "no intact artifact after the trial")
            return
        if run_id:
            self.tracker.finish_job(job, run_id, manifest, str(artifacts.job_dir(self.storage, job.id)))
        self.summary.ran.append(job.id)
        shown = {k: round(v, 2) for k, v in _numeric(manifest["metrics"]).items()
                 if k not in ("steps", "best_step", "train_seconds", "examples")}
        print(f"  [{self.done}/{self.total}] {_label(job)}: {shown}", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        self._failed(self.job_for(trial), self.runs.get(trial.trial_id), _error_text(trial))

    def _failed(self, job: Job, run_id: str | None, why: str) -> None:
        self.summary.failed[job.id] = why
        if run_id:
            self.tracker.fail_job(run_id, why)
        print(f"  [{self.done}/{self.total}] FAILED {_label(job)}: {why}", flush=True)


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
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, log_to_driver=verbose,
                 logging_level=logging.WARNING, configure_logging=True)


def concurrency(res: Resources, kind: str, configured: int | None) -> int:
    """How many trials of this kind fit the cluster at once (a GPU-less cluster counts CPUs only)."""
    if configured:
        return configured
    total = ray.cluster_resources()
    workers = res.num_workers if kind != "eval" else 1
    fits = total.get("CPU", 1) // max(res.cpus_per_worker * workers, 1e-9)
    if res.use_gpu:
        fits = min(fits, total.get("GPU", 0) // max((res.gpus_per_worker or 1) * workers, 1e-9))
    return max(1, int(fits))


def run_stage(sweep: Sweep, kind: str, todo: list[Job], storage: str, tracker: Tracker, summary: Summary) -> None:
    res = sweep.resources(kind)
    ex = sweep.config.execution
    jobs = {j.id: asdict(j) for j in todo}
    trainable = tune.with_parameters(job_trial, jobs=jobs, storage=storage, precision=ex.precision,
                                     resources=asdict(res))
    # A training trial only waits for its TorchTrainer, whose workers hold the CPUs/GPUs; an eval
    # trial does its work itself.
    trial_res = DRIVER_RESOURCES if kind != "eval" else {"CPU": res.cpus_per_worker, **res.custom,
                                                         "GPU": (res.gpus_per_worker or 1) if res.use_gpu else 0}
    tuner = tune.Tuner(
        tune.with_resources(trainable, trial_res),
        param_space={"job_id": tune.grid_search([j.id for j in todo])},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency(res, kind, ex.max_concurrent_trials),
                                    reuse_actors=True),  # eval trials skip re-importing torch
        run_config=tune.RunConfig(
            name=f"{sweep.name}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=os.path.join(storage, "ray"), verbose=0,
            callbacks=[TrackingCallback(tracker, {j.id: j for j in todo}, storage, summary, len(todo))]))
    tuner.fit()


def execute(sweep: Sweep, plan: Plan, storage: str, tracker: Tracker, verbose: bool = False) -> Summary:
    summary, t0 = Summary(), time.perf_counter()
    connect(verbose)
    for kind in KINDS:
        if kind == "ta" and sweep.config.search and not summary.failed:
            from tlr_ray.search import run_search
            sweep = run_search(sweep, storage, tracker, summary)
            plan = plan_sweep(sweep)  # TA and eval jobs change with the chosen arguments
        todo = []
        for job in plan.of_kind(kind):
            manifest = artifacts.verify(storage, job.id)
            if manifest is not None:
                tracker.ensure_logged(job, manifest, str(artifacts.job_dir(storage, job.id)))
                summary.reused.append(job.id)
            elif blocked := [n for n in job.needs if n in summary.failed]:
                summary.failed[job.id] = f"needs {', '.join(blocked)}, which failed"
            else:
                todo.append(job)
        reused = len(plan.of_kind(kind)) - len(todo)
        print(f"[{kind}] {len(todo)} to run, {reused} already done", flush=True)
        if todo:
            t_stage = time.perf_counter()
            run_stage(sweep, kind, todo, storage, tracker, summary)
            print(f"[{kind}] stage took {time.perf_counter() - t_stage:.0f} s", flush=True)
    summary.seconds = time.perf_counter() - t0
    return summary
