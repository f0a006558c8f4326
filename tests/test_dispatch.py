"""The Dispatcher (tlr_ray/dispatch.py) hands Tune a job as soon as the jobs it needs have finished:
a TA starts once its own LAs exist, while other LAs still train. No Ray needed: Tune only calls these."""
from __future__ import annotations

from ray.tune.search import Searcher

from tlr_ray.dispatch import Dispatcher
from tlr_ray.plan import plan_sweep
from tlr_ray.validate import load_sweep


def plan(write_sweep):
    return plan_sweep(load_sweep(write_sweep(variants=["MAD-X", "TARGET"])))


def past_corpora(d: Dispatcher) -> None:
    """Hand out and finish every corpus job (they all run before anything else)."""
    while any(j.kind == "corpus" for j in d.pending):
        for job_id in drain(d, 1000):
            d.on_trial_complete(trial_of(d, job_id))


def drain(d: Dispatcher, start: int) -> list[str]:
    """Ask until the dispatcher has nothing ready; the suggested job ids."""
    out = []
    while (config := d.suggest(f"t{start + len(out)}")) not in (None, Searcher.FINISHED):
        out.append(config["job_id"])
    return out


def trial_of(d: Dispatcher, job_id: str) -> str:
    return next(t for t, j in d.running.items() if j.id == job_id)


def test_a_job_starts_once_its_own_inputs_exist(write_sweep):
    p = plan(write_sweep)
    jobs = {j.id: j for j in p.jobs}
    d = Dispatcher(list(p.jobs), {"corpus": 4, "la": 2, "ta": 4, "eval": 4})
    past_corpora(d)
    first = drain(d, 0)
    assert [jobs[i].kind for i in first] == ["la", "la"]  # the kind's limit, in plan order
    assert d.suggest("waiting") is None  # everything else waits on running jobs
    en = next(i for i in first if jobs[i].languages == ("en",))
    d.on_trial_complete(trial_of(d, en))
    started = [jobs[i] for i in drain(d, 10)]
    # The en LA alone lets MAD-X's TA start (its cycle is [en]), next to the next LA; TARGET's TAs
    # need a target LA and wait.
    tas = [j for j in started if j.kind == "ta"]
    assert tas and all(set(j.needs) == {en} for j in tas)
    assert any(j.kind == "la" for j in started)
    assert all(n not in d.waiting_on for j in started for n in j.needs)


def test_everything_runs_in_dependency_order_and_then_finishes(write_sweep):
    p = plan(write_sweep)
    d = Dispatcher(list(p.jobs), {"corpus": 1, "la": 1, "ta": 1, "eval": 1})
    finished: list[str] = []
    while True:
        config = d.suggest(f"t{len(finished)}")
        if config is Searcher.FINISHED:
            break
        assert config is not None  # with one job at a time, some job is always ready
        needs = next(j for j in p.jobs if j.id == config["job_id"]).needs
        assert set(needs) <= set(finished)
        d.on_trial_complete(f"t{len(finished)}")
        finished.append(config["job_id"])
    assert sorted(finished) == sorted(j.id for j in p.jobs)


def test_dependants_of_a_failed_job_are_not_started(write_sweep):
    p = plan(write_sweep)
    d = Dispatcher(list(p.jobs), {"corpus": 10, "la": 10, "ta": 10, "eval": 10})
    past_corpora(d)
    las = drain(d, 0)
    failed = las[0]
    d.on_trial_complete(trial_of(d, failed), error=True)
    for la in las[1:]:
        d.on_trial_complete(trial_of(d, la))
    while d.suggest("x") not in (None, Searcher.FINISHED):
        d.on_trial_complete("x")
    downstream = {j.id for j in p.jobs if failed in j.needs}
    assert downstream and all("which failed" in d.failed[i] for i in downstream)
    assert failed in d.failed


def test_jobs_wait_for_room_on_the_cluster(write_sweep):
    """Two CPUs, one-CPU jobs: two at a time, whatever their kind; a finished one makes room."""
    p = plan(write_sweep)
    jobs = {j.id: j for j in p.jobs}
    one_cpu = {"corpus": {"CPU": 1}, "la": {"CPU": 1}, "ta": {"CPU": 1}, "eval": {"CPU": 1}}
    limits = {"corpus": 4, "la": 4, "ta": 4, "eval": 4}
    d = Dispatcher(list(p.jobs), limits, capacity={"CPU": 2}, demands=one_cpu)
    first = drain(d, 0)
    assert len(first) == 2 and d.suggest("full") is None
    d.on_trial_complete(trial_of(d, first[0]))
    assert len(drain(d, 10)) == 1
    # A job bigger than the whole cluster still runs, alone (the cluster may grow, or Ray says why not).
    big = Dispatcher(list(p.jobs), limits, capacity={"CPU": 2},
                     demands={**one_cpu, "la": {"CPU": 4}})
    past_corpora(big)
    assert [jobs[i].kind for i in drain(big, 0)] == ["la"]


def test_corpora_are_prepared_before_any_other_job_starts(write_sweep):
    """A bad corpus must fail before GPU time is spent: nothing else starts while a corpus job is left."""
    p = plan(write_sweep)
    jobs = {j.id: j for j in p.jobs}
    d = Dispatcher(list(p.jobs), {"corpus": 2, "la": 4, "ta": 4, "eval": 4})
    first = drain(d, 0)
    assert [jobs[i].kind for i in first] == ["corpus", "corpus"]  # 4 corpora, 2 at a time, nothing else
    for job_id in first:
        d.on_trial_complete(trial_of(d, job_id))
    second = drain(d, 10)
    assert [jobs[i].kind for i in second] == ["corpus", "corpus"]
    d.on_trial_complete(trial_of(d, second[0]))
    assert d.suggest("still one corpus running") is None  # the en LA's corpus is done, yet it waits
    d.on_trial_complete(trial_of(d, second[1]))
    assert {jobs[i].kind for i in drain(d, 20)} == {"la"}


def test_jobs_of_another_driver_are_waited_for_then_reused(write_sweep):
    """`claim` (tlr_ray/leases.py through TrackingCallback): "wait" while another driver runs a job, "done"
    once it has published it. Two corpora found done in one call let the LAs go in that same call."""
    p = plan(write_sweep)
    jobs = {j.id: j for j in p.jobs}
    state = {j.id: "wait" for j in p.jobs if j.kind == "corpus"}
    d = Dispatcher(list(p.jobs), {"corpus": 2, "la": 4, "ta": 4, "eval": 4},
                   claim=lambda job: state.get(job.id, "run"))
    d.RECHECK_S = 0.0
    assert d.suggest("t0") is None  # every corpus is another driver's: nothing to run yet, no error
    assert set(d.elsewhere) == set(state)
    state.update(dict.fromkeys(state, "done"))
    started = drain(d, 1)
    assert started and {jobs[i].kind for i in started} == {"la"}
    assert sorted(d.reused) == sorted(state)
    assert not d.elsewhere


def test_tune_handles_its_events_every_few_seconds_while_the_dispatcher_waits():
    """Tune's own wait for a next trial is 600 s without handling events (a finished trial's actor keeps
    its CPU meanwhile); during our Tune runs it is a few seconds, and it is put back afterwards."""
    import inspect

    from ray.tune.execution.tune_controller import TuneController

    from tlr_ray.tune_patches import tune_keeps_stepping
    timeout = inspect.signature(TuneController._update_trial_queue).parameters["timeout"]
    assert timeout.default == 600  # Ray's, which the sweep shortens
    with tune_keeps_stepping():
        assert inspect.signature(TuneController._update_trial_queue).parameters["timeout"].default == 2
    assert inspect.signature(TuneController._update_trial_queue).parameters["timeout"].default == 600


def test_a_kept_trial_process_is_released_once_idle_and_tune_is_put_back():
    """Tune keeps one finished trial's process (with its CPU) while no trial is staged, for as long as that
    lasts; during our Tune runs it is released after a short idle time. Tune's own cleanup code runs here,
    on a controller that holds only what that code reads."""
    import time
    from types import SimpleNamespace

    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.utils.object_cache import _ObjectCache

    from tlr_ray.tune_patches import tune_releases_idle_trials

    def controller_keeping_one():
        removed = []
        c = SimpleNamespace(_actor_cache=_ObjectCache(may_keep_one=True), _staged_trials=set(), _pending_trials=set(),
                            _search_alg=SimpleNamespace(is_finished=lambda: False),
                            _remove_actor=lambda tracked_actor: removed.append(tracked_actor))
        assert c._actor_cache.cache_object("1 CPU", actor)
        return c, removed

    actor = SimpleNamespace(set_on_stop=lambda callback: None, set_on_error=lambda callback: None)

    c, removed = controller_keeping_one()
    TuneController._cleanup_cached_actors(c)
    assert not removed and c._actor_cache.num_cached_objects == 1  # Ray's behaviour: kept, however long
    original = TuneController._cleanup_cached_actors
    with tune_releases_idle_trials(seconds=0.3):
        c, removed = controller_keeping_one()
        TuneController._cleanup_cached_actors(c)
        assert not removed  # just finished: kept for the next trial
        c._pending_trials.add("trial")
        time.sleep(0.4)
        TuneController._cleanup_cached_actors(c)
        assert not removed  # a trial of ours is pending: it may take the process
        c._pending_trials.clear()
        TuneController._cleanup_cached_actors(c)
        time.sleep(0.4)
        TuneController._cleanup_cached_actors(c)
        assert removed == [actor] and c._actor_cache.num_cached_objects == 0
        # A controller without what the check reads (another Ray): released at once, not kept forever.
        c, removed = controller_keeping_one()
        del c._staged_trials
        TuneController._cleanup_cached_actors(c)
        assert removed == [actor]
    assert TuneController._cleanup_cached_actors is original


def test_tune_controllers_have_what_the_idle_check_reads():
    """The names `tune_releases_idle_trials` reads on a real controller (set in its __init__), pinned to this
    Ray: an upgrade that renames one fails here, not silently in a two-driver sweep."""
    import inspect

    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.utils.object_cache import _ObjectCache
    init = inspect.getsource(TuneController.__init__)
    assert all(f"self.{name}" in init for name in ("_actor_cache", "_staged_trials", "_pending_trials"))
    assert isinstance(inspect.getattr_static(_ObjectCache, "num_cached_objects"), property)
