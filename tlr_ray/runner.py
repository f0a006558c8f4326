"""Run one job outside of any scheduler: the recipe into a staging folder, then publish.

Ray Train workers and Tune trials call this; so do tests, without Ray.
"""
from __future__ import annotations

import shutil

from tlr_ray import artifacts
from tlr_ray.train.context import JobContext


def recipe(kind: str):
    # Imported lazily: planning and `--dry-run` must not import torch.
    if kind == "corpus":
        from tlr_ray.train.corpus_prepare import run_corpus_job
        return run_corpus_job
    if kind in ("la", "ba"):
        from tlr_ray.train.mlm_adapter import train_mlm_adapter
        return train_mlm_adapter
    if kind == "ta":
        from tlr_ray.train.ta import train_ta
        return train_ta
    if kind == "eval":
        from tlr_ray.train.evaluate import run_eval
        return run_eval
    raise ValueError(f"unknown job kind {kind!r}")


def where_running() -> dict:
    """The host, and the Ray node when inside Ray: recorded in the manifest (which node did the work)."""
    import socket
    out = {"host": socket.gethostname()}
    try:
        import ray
        if ray.is_initialized():
            out["ray_node"] = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001  (outside Ray this is only informative)
        pass
    return out


def dependencies(job: dict, storage: str) -> dict:
    """Local folders of the published artifacts this job needs (downloaded when the store is remote);
    a missing or damaged one is an error."""
    deps = {}
    for needed in job["needs"]:
        if artifacts.verify(storage, needed) is None:
            raise RuntimeError(f"job {job['id']} needs {needed}, which has no intact artifact in {storage}")
        deps[needed] = artifacts.local_copy(storage, needed)
    return deps


def run_job(job: dict, storage: str, ctx: JobContext) -> dict:
    """Run `job` and publish its artifact (rank 0 only). Returns the recipe's metrics."""
    ctx.deps = dependencies(job, storage)
    if ctx.rank == 0 and ctx.live is None:
        from tlr_ray.progress import sender
        ctx.live = sender(job["id"])  # the sweep driver's live display; None outside a sweep
    staging = artifacts.new_staging(storage, job["id"]) if ctx.rank == 0 else None
    try:
        metrics = recipe(job["kind"])(job, staging, ctx)
        if ctx.rank == 0:
            artifacts.publish(storage, staging, job, {k: v for k, v in metrics.items() if k != "history"},
                              ran_on=where_running())
        return metrics
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)  # a failed attempt leaves nothing behind
