"""Hyperparameter search for task adapters: Ray Tune with Optuna (and optionally ASHA), before the grid.

The `search:` section names a `tasks:` entry, a variant and distributions over its training arguments.
After the LA/BA stages, each trial trains that variant's TA (first target's cycle, first seed) with
sampled arguments, as an ordinary job: a Ray Train run, an artifact, an MLflow run (tagged `search`).
The best arguments (highest validation score) then replace the entry's `train_args` for the whole grid,
which is planned again; the grid's dimensions (variants, seeds, languages) stay a grid. The result is
kept in the artifact store (`searches/<id>.json`), so running the sweep again does not search again.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from tlr_ray.config import Resources, Sweep
from tlr_ray.fingerprint import digest
from tlr_ray.plan import Job, plan_sweep
from tlr_ray.specs import canonical
from tlr_ray.storage import StoreFile, is_local, join
from tlr_ray.tasks.registry import TASKS

OBJECTIVE = "live/best_score"  # the TA's best validation score so far (the task's mode says which way)


def with_args(sweep: Sweep, entry: str, params: dict) -> Sweep:
    args = sweep.task_args[entry]
    typed = {k: type(getattr(args, k))(v) if getattr(args, k) is not None else v for k, v in params.items()}
    return dataclasses.replace(sweep, task_args={**sweep.task_args, entry: dataclasses.replace(args, **typed)})


def searched_ta(sweep: Sweep) -> Job:
    """The TA the search trains: the search variant's first TA for the entry's training dataset."""
    search = sweep.config.search
    train = sweep.config.tasks[search.task].train
    return next(j for j in plan_sweep(sweep).of_kind("ta") if search.variant in j.variants and j.dataset == train)


def cache_file(sweep: Sweep, storage: str) -> Path | StoreFile:
    """storage/searches/<digest>.json: a Path in a local store, else a StoreFile (the same methods, read
    and written through the store's filesystem)."""
    search = dataclasses.asdict(sweep.config.search)
    name = f"{digest({'ta': canonical(searched_ta(sweep).spec), 'search': search})[:16]}.json"
    return Path(storage) / "searches" / name if is_local(storage) else StoreFile(storage, "searches", name)


def param_space(sweep: Sweep) -> dict:
    from ray import tune
    space = {}
    for name, d in sweep.config.search.params.items():
        space[name] = (tune.loguniform(*d.loguniform) if d.loguniform else
                       tune.uniform(*d.uniform) if d.uniform else tune.choice(list(d.choice)))
    return space


def search_trial(config: dict, sweep: Sweep, storage: str, precision: str, resources: Resources) -> None:
    from tlr_ray.trial import job_trial
    job = searched_ta(with_args(sweep, sweep.config.search.task, config))
    ex = sweep.config.execution
    # Two trials may sample the same arguments (a `choice`), hence the same job, at once: each keeps its
    # own Ray Train run folder.
    from ray import tune
    job_trial({"job_id": job.id}, {job.id: job}, storage, precision, {"ta": resources},
              ex.checkpoint_every, ex.max_failures, train_run=f"{job.id}-{tune.get_context().get_trial_id()}",
              ray_train=ex.ray_train)


def run_search(sweep: Sweep, storage: str, tracker, summary) -> Sweep:
    """Search (or reuse an earlier search), and return the sweep with the best arguments applied."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from tlr_ray.dispatch import concurrency
    from tlr_ray.trial import TrackingCallback, trial_holds
    from tlr_ray.tune_patches import idle_trials_released, tune_keeps_stepping, tune_releases_idle_trials
    search = sweep.config.search
    cached = cache_file(sweep, storage)
    if cached.is_file():
        best = json.loads(cached.read_text())
        print(f"[search] reusing {cached.name}: {best['params']} (validation {best['score']:.2f})", flush=True)
        return with_args(sweep, search.task, best["params"])
    res = sweep.resources("ta")
    print(f"[search] {search.num_samples} Optuna trials of {search.variant} on {search.task} over "
          f"{', '.join(search.params)}", flush=True)

    failed_trials: list[str] = []

    class SearchTracking(TrackingCallback):
        def job_for(self, trial) -> Job:  # trials carry sampled arguments, not job ids
            return searched_ta(with_args(sweep, search.task, trial.config))

        def _failed(self, job: Job, run_id: str | None, why: str) -> None:
            # A failed trial is one sample fewer, not a failed sweep; its MLflow run says why.
            failed_trials.append(why)
            if run_id:
                self.tracker.fail_job(run_id, why)
            print(f"  [{self.done}/{self.total}] search trial failed (ignored): {why}", flush=True)

    mode = TASKS[sweep.config.tasks[search.task].name(search.task)].mode  # the task of the searched entry
    scheduler = ASHAScheduler(grace_period=1) if search.scheduler == "asha" else None
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(search_trial, sweep=sweep, storage=storage,
                                                 precision=sweep.config.execution.precision,
                                                 resources=res),
                            trial_holds(res, "ta", sweep.config.execution.ray_train)),
        param_space=param_space(sweep),
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(seed=search.seed), scheduler=scheduler, metric=OBJECTIVE, mode=mode,
            num_samples=search.num_samples, reuse_actors=idle_trials_released(),  # as the sweep's trials
            max_concurrent_trials=concurrency(res, "ta", sweep.config.execution.max_concurrent_trials)),
        run_config=tune.RunConfig(name=f"{sweep.name}-search-{time.strftime('%Y%m%d-%H%M%S')}",
                                  storage_path=join(storage, "ray"), verbose=0,
                                  callbacks=[SearchTracking(tracker, {}, storage, summary, search.num_samples,
                                                            tags={"search": search.task})]))
    with tune_keeps_stepping(), tune_releases_idle_trials():
        results = tuner.fit()
    if not [r for r in results if r.metrics and OBJECTIVE in r.metrics]:
        raise RuntimeError(f"every search trial failed ({'; '.join(failed_trials)})")
    best = results.get_best_result(metric=OBJECTIVE, mode=mode)
    params = {k: best.config[k] for k in search.params}
    trials = [{"params": {k: r.config[k] for k in search.params}, "score": r.metrics.get(OBJECTIVE)}
              for r in results if r.metrics]
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({"params": params, "score": best.metrics[OBJECTIVE], "trials": trials}, indent=1))
    print(f"[search] best {params} (validation {best.metrics[OBJECTIVE]:.2f}); applied to the grid", flush=True)
    return with_args(sweep, search.task, params)
