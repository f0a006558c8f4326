"""Run one job outside of any scheduler: the recipe into a staging folder, then publish.

Ray Train workers and Tune trials call this; so do tests, without Ray.
"""
from __future__ import annotations

import errno
import math
import numbers
import shutil
import time

from tlr_ray import artifacts
from tlr_ray.plan import Job
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


def dependencies(job: Job, storage: str) -> dict:
    """Local folders of the published artifacts this job needs (downloaded when the store is remote);
    a missing or damaged one is an error."""
    deps = {}
    for needed in job.needs:
        if artifacts.verify(storage, needed) is None:
            raise RuntimeError(f"job {job.id} needs {needed}, which has no intact artifact in {storage}")
        deps[needed] = artifacts.local_copy(storage, needed)
    return deps


def run_job(job: Job, storage: str, ctx: JobContext) -> dict:
    """Run `job` and publish its artifact (rank 0 only). Returns the recipe's metrics, plus run_job's own
    phase times (`time_inputs_s`, `time_imports_s`, `time_recipe_s`, `time_publish_s`; see `timings`), which
    are not in the manifest: publishing's own time is known only once the manifest is written."""
    started = time.perf_counter()
    ctx.deps = dependencies(job, storage)
    inputs_ready = time.perf_counter()
    if ctx.rank == 0 and ctx.live is None:
        from tlr_ray.progress import sender
        ctx.live = sender(job.id)  # the sweep driver's live display; None outside a sweep
    staging = artifacts.new_staging(storage, job.id) if ctx.rank == 0 else None
    try:
        run = recipe(job.kind)  # the first job in a process imports torch, transformers, adapters here
        imported = time.perf_counter()
        metrics = run(job, staging, ctx)
        ran = time.perf_counter()
        earned(job, metrics)
        if ctx.rank == 0:
            artifacts.publish(storage, staging, job, {k: v for k, v in metrics.items() if k != "history"},
                              ran_on=where_running())
        metrics.update(time_inputs_s=inputs_ready - started, time_imports_s=imported - inputs_ready,
                       time_recipe_s=ran - imported, time_publish_s=time.perf_counter() - ran)
        return metrics
    except Exception as e:
        if is_write_failure(e) and (full := disk_full(staging)):
            raise OSError(errno.ENOSPC, f"No space left on device: {full}; job {job.id} could not write its "
                          f"artifact ({type(e).__name__}: {e}). Nothing of it is published. Free space there "
                          "(or give the sweep another execution.storage) and run the same command again: "
                          "finished jobs are kept") from e
        raise
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)  # a failed attempt leaves nothing behind


FULL_BELOW = 1 << 20  # bytes free: a write that failed there failed for want of space
# What writers that carry no errno say when a write fails: torch.save ("[enforce fail at
# inline_container.cc:672] . unexpected pos 960 vs 854", "PytorchStreamWriter failed writing file") and
# safetensors ("IoError(Os { code: 28, kind: StorageFull, ... })").
WRITE_FAILED = ("inline_container", "PytorchStreamWriter", "StorageFull", "No space left")


def is_write_failure(e: BaseException | None) -> bool:
    """An exception (or one it was raised from) that a failed write raises: an OSError ENOSPC/EDQUOT, or
    torch's and safetensors' own errors. Not our checks' errors (a diverged loss, bad data, a misfit)."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(e) for text in WRITE_FAILED):
            return True
        e = e.__cause__ or e.__context__
    return False


def disk_full(staging) -> str | None:
    """'<folder> has N bytes free' when the filesystem a job writes to (the storage root's staging folder,
    or a remote store's local staging folder) is all but full, else None."""
    try:
        free = shutil.disk_usage(staging).free
    except (OSError, TypeError):  # no staging folder (rank > 0), or it is gone: nothing to say
        return None
    return f"{staging.parent} has {free} bytes free" if free < FULL_BELOW else None


def earned(job: Job, metrics: dict) -> None:
    """No NaN or inf becomes a published result (training loops check their own losses and evaluations as
    they go; this catches the rest, e.g. an evaluation's metric on zero examples)."""
    bad = {k: v for k, v in metrics.items()
           if isinstance(v, numbers.Real) and not isinstance(v, bool) and not math.isfinite(v)}
    if bad:
        raise RuntimeError(f"job {job.id} ({job.kind}): {', '.join(f'{k} = {v}' for k, v in bad.items())}: "
                           "not a result, nothing is published. Check the job's data (an evaluation with no usable "
                           "examples?) and its inputs' training (a diverged adapter gives non-finite outputs)")


def timings(metrics: dict) -> dict[str, float]:
    """The phase times of a job's metrics as run_job returns them, flat: the recipe's `time_*_s` (an eval
    job nests its own under "timings"), run_job's, and the training loop's `train_seconds`."""
    nested = metrics.get("timings") if isinstance(metrics.get("timings"), dict) else {}
    return {k: float(v) for k, v in {**metrics, **nested}.items()
            if (k.startswith("time_") or k == "train_seconds")
            and isinstance(v, (int, float)) and not isinstance(v, bool)}
