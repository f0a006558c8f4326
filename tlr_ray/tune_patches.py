"""Where our Tune runs change Tune's private behaviour, each for the duration of one `tuner.fit()` and put
back afterwards (both the sweep's runs, tlr_ray/execute.py, and the search's, tlr_ray/search.py). Tune has
no option for either; each is guarded so that another Ray than the one it was written for (2.60) is left
alone, and tests/test_dispatch.py pins what each relies on."""
from __future__ import annotations

import contextlib
import logging
import os
import time

log = logging.getLogger(__name__)


@contextlib.contextmanager
def tune_keeps_stepping(seconds: int = 2):
    """Tune's controller, when none of its trials is pending or running, asks the searcher for the next
    trial in a loop for up to 600 s, and in that time handles no event: a trial that has just finished is
    not stopped, and its actor keeps its CPU/GPU. The Dispatcher answers "not yet" while another driver
    runs a job this sweep needs, so on a shared cluster that other driver's next trial could not be placed
    for those 600 s (two drivers on one CPU: a 10-minute stall, tests/test_driver_faults.py). The timeout is
    not exposed (ray/tune/execution/tune_controller.py, `_update_trial_queue`): shortened here, for our Tune
    runs only, so that Tune handles its events every few seconds while it waits."""
    from ray.tune.execution.tune_controller import TuneController
    method = TuneController._update_trial_queue
    saved = method.__defaults__
    if saved is None or len(saved) != 2:  # another Ray than the one this was written for: leave it be
        yield
        return
    method.__defaults__ = (saved[0], seconds)  # (blocking, timeout)
    try:
        yield
    finally:
        method.__defaults__ = saved


IDLE_TRIAL_KEPT_S = 10.0


def idle_trials_released() -> bool:
    """Whether `tune_releases_idle_trials` can work here; trials reuse their processes only then. Not under
    Ray Client (`RAY_ADDRESS=ray://...`): Tune's controller then runs in a remote actor, out of our reach."""
    from ray.tune.execution.tune_controller import TuneController
    if os.environ.get("RAY_ADDRESS", "").startswith("ray://"):
        return False
    return all(hasattr(TuneController, name) for name in ("_cleanup_cached_actors", "on_step_end"))


@contextlib.contextmanager
def tune_releases_idle_trials(seconds: float = IDLE_TRIAL_KEPT_S):
    """Trials reuse their processes (Tune's `reuse_actors`: a trial skips re-importing torch, transformers
    and adapters), but Tune keeps one finished trial's process, with its CPUs/GPUs, for as long as no other
    trial is staged: for hours while an LA trains, and on a shared cluster (`ray job submit`, two drivers
    of one sweep) the other driver's job may need exactly that CPU while this driver waits for that job's
    lease: two drivers of one sweep on one CPU deadlocked so (tests/test_driver_faults.py). Here a kept
    process is released once it has been idle for `seconds` (kept, and no trial of ours staged or pending
    that could take it); reuse happens within a step or two of a trial ending (the Dispatcher answers as
    soon as Tune asks), so it is kept where it counts. Tune has no option for this
    (ray/tune/execution/tune_controller.py `_cleanup_cached_actors`, called at the end of every step):
    wrapped here, for our Tune runs only."""
    from ray.tune.execution.tune_controller import TuneController
    original = TuneController._cleanup_cached_actors

    def cleanup(self, force_all: bool = False):
        try:  # a kept process, and no trial of ours staged or pending that could take it
            idle = (self._actor_cache.num_cached_objects and not self._staged_trials
                    and not self._pending_trials)
        except AttributeError as e:  # another Ray's controller: keep no idle process (no deadlock), and say so
            if not getattr(self, "_tlr_ray_warned", False):
                self._tlr_ray_warned = True
                log.error("tlr_ray.tune_patches: this Ray's TuneController has no %s; finished trial processes "
                          "are released at once (no reuse) until tune_releases_idle_trials is updated", e.name)
            return original(self, force_all=True)
        if not idle:
            self._tlr_ray_idle_since = None
        else:
            self._tlr_ray_idle_since = getattr(self, "_tlr_ray_idle_since", None) or time.monotonic()
            force_all = force_all or time.monotonic() - self._tlr_ray_idle_since >= seconds
        return original(self, force_all=force_all)

    TuneController._cleanup_cached_actors = cleanup
    try:
        yield
    finally:
        TuneController._cleanup_cached_actors = original
