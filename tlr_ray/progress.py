"""Live progress of a running sweep: each running job's step/total, loss, steps per second and ETA, and
the sweep's jobs done/total with an ETA, shown by the driver while Tune runs.

Why an actor and not Tune results: a Ray Train report is a collective call that every worker must make
at the same step, and Tune's searchers and schedulers require their metric in every result; progress
is neither. So rank 0 of each training job sends `{step, total, loss, rate}` at its first step, then at
most every 5 s, to one named actor (fire and forget), and a driver thread reads it.
On a terminal the display is a tqdm bar of jobs done, whose text lists the running jobs, refreshed at
most every 5 s; elsewhere (`ray job logs`, CI) a plain status line at most every 30 s
(`TLR_RAY_STATUS_EVERY_S`).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

import ray

BOARD = "tlr_ray_progress"
SEND_EVERY_S = 5.0


@ray.remote(num_cpus=0)
class Board:
    """What each running job last said about its progress (job id -> info)."""

    def __init__(self):
        self.jobs: dict[str, dict] = {}

    def update(self, job_id: str, info: dict) -> None:
        self.jobs[job_id] = {**info, "at": time.time()}

    def remove(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    def snapshot(self) -> dict[str, dict]:
        return self.jobs


def sender(job_id: str) -> Callable[[dict], None] | None:
    """For a job's rank 0 inside Ray: a function sending its progress to the driver's board (None
    outside a sweep)."""
    try:
        board = ray.get_actor(BOARD) if ray.is_initialized() else None
    except ValueError:  # no board: a job run outside a sweep
        board = None
    if board is None:
        return None
    return lambda info: board.update.remote(job_id, info)


class Throttle:
    """Call `send` with the loop's progress at the first step (the job shows up with its step count at
    once, however short it is), then at most every SEND_EVERY_S seconds (the loss read then is the only
    host-device sync it adds)."""

    def __init__(self, send: Callable[[dict], None] | None, total: int, start: int):
        self.send, self.total, self.start = send, total, start
        self.t0, self.last = time.monotonic(), None

    def __call__(self, step: int, loss: Callable[[], float]) -> None:
        now = time.monotonic()
        if self.send is None or (self.last is not None and now - self.last < SEND_EVERY_S):
            return
        self.last = now
        rate = (step - self.start) / max(now - self.t0, 1e-9)
        self.send({"step": step, "total": self.total, "loss": loss(), "rate": rate})


def describe_job(label: str, info: dict) -> str:
    eta = (info["total"] - info["step"]) / info["rate"] if info.get("rate") else None
    return (f"{label} {info['step']}/{info['total']} loss {info['loss']:.3f} {info['rate']:.1f} steps/s"
            + (f" ETA {_duration(eta)}" if eta is not None else ""))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


class Display:
    """The driver's live view. `done()` and `running()` come from the Tune callback; `planned_steps`
    holds each training job's step budget where the plan knows it (for the sweep's ETA)."""

    def __init__(self, board, total: int, labels: dict[str, str], planned_steps: dict[str, int],
                 done: Callable[[], int], tty: bool | None = None):
        self.board, self.total, self.labels, self.planned = board, total, labels, planned_steps
        self.done = done
        self.tty = sys.stdout.isatty() if tty is None else tty
        # Elsewhere than a terminal (ray job logs, CI) every 30 s unless TLR_RAY_STATUS_EVERY_S says otherwise.
        self.every = 5.0 if self.tty else float(os.environ.get("TLR_RAY_STATUS_EVERY_S") or 30.0)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="tlr_ray-progress", daemon=True)
        self.bar = None
        self.finished: set[str] = set()

    def line(self, jobs: dict[str, dict]) -> str:
        """`jobs done/total, ETA ...; <running job>; ...` from the board's snapshot."""
        running = [describe_job(self.labels.get(j, j), info) for j, info in jobs.items() if info.get("total")]
        rate = sum(info.get("rate") or 0 for info in jobs.values())
        left = sum(info["total"] - info["step"] for info in jobs.values() if info.get("total"))
        left += sum(n for j, n in self.planned.items() if j not in jobs and j not in self.finished)
        eta = f", ETA {_duration(left / rate)} (training steps left / current rate)" if rate > 0 else ""
        return f"jobs {self.done()}/{self.total}{eta}" + "".join(f"; {r}" for r in running)

    def job_started(self, job_id: str) -> None:
        if not self.tty:
            print(f"  started {self.labels.get(job_id, job_id)}", flush=True)

    def job_ended(self, job_id: str) -> None:
        self.finished.add(job_id)
        try:
            self.board.remove.remote(job_id)
        except Exception:  # noqa: BLE001  (the display is best effort; it never fails a sweep)
            pass

    def show(self) -> None:
        try:
            jobs = ray.get(self.board.snapshot.remote(), timeout=10)
        except Exception:  # noqa: BLE001
            return
        text = self.line(jobs)
        if self.tty:
            self.bar.n = self.done()
            self.bar.set_postfix_str(text.split("; ", 1)[1] if "; " in text else "", refresh=False)
            self.bar.refresh()
        else:
            print(f"  status: {text}", flush=True)

    def write(self, text: str) -> None:
        """A line from the callback, printed above the bar on a terminal."""
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def _run(self) -> None:
        while not self.stop_event.wait(self.every):
            self.show()

    def __enter__(self) -> Display:
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, desc="jobs", unit="job", dynamic_ncols=True, mininterval=5,
                            file=sys.stdout)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(timeout=15)
        if self.bar is not None:
            self.bar.n = self.done()
            self.bar.close()
