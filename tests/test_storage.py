"""The storage root as a folder or a URI: the artifact store's publish / verify / local_copy round trip,
damage detection and repair, on a local folder, on pyarrow's in-memory mock filesystem (the object-store
code path) and on a file:// URI (the same path, on disk). Fast: no Ray, no training."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest
from helpers import eval_spec, hand_job, ta_spec
from pyarrow._fs import _MockFileSystem

from tlr_ray import artifacts
from tlr_ray import storage as store
from tlr_ray.specs import canonical
from tlr_ray.typed_yaml import ConfigError
from tlr_ray.validate import load_sweep

JOB = hand_job("ta-0123abcd", ta_spec())
WEIGHTS = bytes(range(256)) * 64


@pytest.fixture(params=["local", "mock", "file"])
def storage(request, tmp_path, monkeypatch) -> str:
    """A storage root of each kind; the machine's download cache in tmp_path."""
    monkeypatch.setenv("TLR_RAY_CACHE", str(tmp_path / "cache"))
    if request.param == "mock":
        monkeypatch.setitem(store.FILESYSTEMS, "mock", _MockFileSystem())
        return "mock://bucket/root"
    if request.param == "file":
        return (tmp_path / "store").as_uri()
    return str(tmp_path / "store")


def stage(storage: str, weights: bytes = WEIGHTS) -> Path:
    staging = artifacts.new_staging(storage, JOB.id)
    (staging / "adapter").mkdir()
    (staging / "adapter" / "weights.bin").write_bytes(weights)
    (staging / "adapter" / "adapter_config.json").write_text('{"reduction_factor": 16}')
    pd.DataFrame({"index": [0, 1, 2, 3], "correct": [True, False, True, True]}).to_parquet(
        staging / "predictions.parquet")
    return staging


def publish(storage: str, weights: bytes = WEIGHTS) -> str:
    return artifacts.publish(storage, stage(storage, weights), JOB, {"accuracy": 75.0}, ran_on={"host": "h"})


def fs_path(storage: str, *parts: str) -> tuple[pafs.FileSystem, str]:
    fs, root = store.filesystem(store.resolve(storage))
    return fs, "/".join([root, *parts])


def kind(fs, path) -> pafs.FileType:
    return fs.get_file_info(path).type


def files_under(storage: str, under: str) -> list[str]:
    fs, path = fs_path(storage, under)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return sorted(i.path[len(path) + 1:] for i in infos if i.type == pafs.FileType.File)


def test_round_trip(storage, tmp_path):
    staging = stage(storage)
    local = store.is_local(storage)
    # A local store stages inside itself (publish is a rename); a remote one in a local temp folder.
    assert (Path(store.resolve(storage)) in staging.parents) == local
    where = artifacts.publish(storage, staging, JOB, {"accuracy": 75.0}, ran_on={"host": "h"})
    assert where == artifacts.location(storage, JOB.id) == store.join(store.resolve(storage), "jobs", JOB.id)
    assert not staging.exists()  # consumed
    assert files_under(storage, f"jobs/{JOB.id}") == [
        "adapter/adapter_config.json", "adapter/weights.bin", "manifest.json", "predictions.parquet"]
    manifest = artifacts.verify(storage, JOB.id)
    assert manifest["metrics"] == {"accuracy": 75.0} and manifest["spec"] == canonical(JOB.spec)
    assert set(manifest["files"]) == {"adapter/adapter_config.json", "adapter/weights.bin", "predictions.parquet"}
    copy = artifacts.local_copy(storage, JOB.id)
    assert (copy / "adapter" / "weights.bin").read_bytes() == WEIGHTS
    if local:
        assert copy == Path(where)
    else:
        assert copy == tmp_path / "cache" / "artifacts" / JOB.id
        assert json.loads((copy / "manifest.json").read_text()) == manifest


@pytest.mark.parametrize("storage", ["local", "file"], indirect=True)  # analysis/ opens real URIs only
def test_eval_predictions_read_from_the_artifact_location(storage):
    from analysis import predictions
    with pytest.raises(FileNotFoundError, match="no predictions.parquet"):
        predictions.load(artifacts.location(storage, JOB.id), "nli", "accuracy")
    where = publish(storage)
    assert predictions.load(where, "nli", "accuracy").value() == 75.0


@pytest.mark.parametrize("damage", ["truncated", "no manifest"])
def test_damage_is_detected_moved_aside_and_the_job_publishable_again(storage, damage, caplog):
    publish(storage)
    fs, folder = fs_path(storage, "jobs", JOB.id)
    if damage == "truncated":
        with fs.open_output_stream(f"{folder}/adapter/weights.bin") as f:
            f.write(WEIGHTS[:100])
        problem = "adapter/weights.bin does not match its checksum"
    else:
        fs.delete_file(f"{folder}/manifest.json")
        problem = "no readable manifest"
    with caplog.at_level(logging.WARNING, logger="tlr_ray.artifacts"):
        assert artifacts.verify(storage, JOB.id) is None
    (record,) = [r for r in caplog.records if r.name == "tlr_ray.artifacts"]
    msg = record.getMessage()
    assert JOB.id in msg and problem in msg and "corrupt" in msg, msg
    assert kind(fs, folder) == pafs.FileType.NotFound  # no longer in jobs/
    aside = files_under(storage, "corrupt")
    assert aside and all(p.startswith(f"{JOB.id}-") for p in aside)
    assert any(p.endswith("adapter/weights.bin") for p in aside)  # kept for inspection
    assert artifacts.verify(storage, JOB.id) is None  # nothing there now: not an error again
    publish(storage)
    assert artifacts.verify(storage, JOB.id)["metrics"] == {"accuracy": 75.0}
    assert (artifacts.local_copy(storage, JOB.id) / "adapter" / "weights.bin").read_bytes() == WEIGHTS


def test_partial_upload_without_manifest_never_counts(storage):
    """What an interrupted remote publish leaves (files, no manifest) is not an artifact."""
    fs, folder = fs_path(storage, "jobs", JOB.id)
    store.make_parent(fs, f"{folder}/adapter/weights.bin")
    with fs.open_output_stream(f"{folder}/adapter/weights.bin") as f:
        f.write(WEIGHTS)
    assert artifacts.verify(storage, JOB.id) is None
    publish(storage)
    assert artifacts.verify(storage, JOB.id) is not None


def test_publish_keeps_an_intact_artifact_of_the_same_job(storage):
    publish(storage)
    publish(storage, weights=b"another attempt")  # a retried trial finishing second
    assert (artifacts.local_copy(storage, JOB.id) / "adapter" / "weights.bin").read_bytes() == WEIGHTS
    assert artifacts.verify(storage, JOB.id) is not None
    assert files_under(storage, "corrupt") == []


@pytest.mark.parametrize("storage", ["mock", "file"], indirect=True)
def test_local_copy_is_reused_and_downloaded_again_when_damaged(storage, monkeypatch, caplog):
    remote = storage
    publish(remote)
    copy = artifacts.local_copy(remote, JOB.id)
    calls = []
    real = artifacts._download
    monkeypatch.setattr(artifacts, "_download", lambda *a: calls.append(a) or real(*a))
    assert artifacts.local_copy(remote, JOB.id) == copy and calls == []  # intact: reused
    (copy / "adapter" / "weights.bin").write_bytes(b"damaged")
    with caplog.at_level(logging.WARNING, logger="tlr_ray.artifacts"):
        assert artifacts.local_copy(remote, JOB.id) == copy
    assert len(calls) == 1 and "downloading it again" in caplog.text
    assert (copy / "adapter" / "weights.bin").read_bytes() == WEIGHTS
    assert artifacts.verify(remote, JOB.id) is not None  # the store's copy was never touched


@pytest.mark.parametrize("storage", ["mock", "file"], indirect=True)
def test_local_copy_of_a_damaged_remote_artifact_fails_and_moves_it_aside(storage):
    remote = storage
    publish(remote)
    fs, folder = fs_path(remote, "jobs", JOB.id)
    with fs.open_output_stream(f"{folder}/predictions.parquet") as f:
        f.write(b"not parquet")
    with pytest.raises(RuntimeError, match="predictions.parquet does not match its checksum.*moved aside"):
        artifacts.local_copy(remote, JOB.id)
    assert not (store.cache_root() / "artifacts" / JOB.id).exists()
    assert artifacts.verify(remote, JOB.id) is None and files_under(remote, "corrupt")
    with pytest.raises(FileNotFoundError, match="no readable manifest"):
        artifacts.local_copy(remote, JOB.id)


def test_runner_dependencies_are_local_folders(storage):
    from tlr_ray.runner import dependencies
    publish(storage)
    deps = dependencies(hand_job("eval-1", eval_spec(), needs=(JOB.id,)), storage)
    assert (deps[JOB.id] / "adapter" / "weights.bin").read_bytes() == WEIGHTS
    with pytest.raises(RuntimeError, match="needs la-missing, which has no intact artifact"):
        dependencies(hand_job("eval-1", eval_spec(), needs=("la-missing",)), storage)


def test_join_resolve_and_scheme_checks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert store.resolve("runs") == str(tmp_path / "runs") and store.is_local("runs")
    assert store.join(store.resolve("runs"), "ray") == str(tmp_path / "runs" / "ray")
    for uri in ("s3://bucket/sweeps", "gs://bucket/sweeps/", "file:///shared/runs"):
        assert not store.is_local(uri)
        assert store.resolve(uri) == uri.rstrip("/")  # a URI is never made into a path
        assert store.join(uri, "ray", "train") == uri.rstrip("/") + "/ray/train"
        assert store.check(uri) is None
    assert "unknown scheme ftp://" in store.check("ftp://host/runs")
    fs, root = store.filesystem((tmp_path / "x").as_uri())
    assert isinstance(fs, pafs.LocalFileSystem) and root == str(tmp_path / "x")
    monkeypatch.setitem(store.FILESYSTEMS, "mock", mock := _MockFileSystem())
    assert store.filesystem("mock://b/r/") == (mock, "b/r") and store.check("mock://b/r") is None


def test_storage_with_a_bad_scheme_is_a_config_error(write_sweep):
    with pytest.raises(ConfigError) as e:
        load_sweep(write_sweep(execution={"storage": "ftp://host/runs"}))
    assert "execution.storage" in str(e.value) and "unknown scheme ftp://" in str(e.value)
    # No network at validation: an s3:// root is accepted as given.
    assert load_sweep(write_sweep(execution={"storage": "s3://bucket/runs"})).config.execution.storage == \
        "s3://bucket/runs"


def test_bad_storage_option_is_refused(capsys, write_sweep):
    from tlr_ray.sweep import main
    assert main([str(write_sweep()), "--dry-run", "--storage", "sftp://host/x"]) == 2
    assert "--storage 'sftp://host/x': unknown scheme sftp://" in capsys.readouterr().err


def test_search_cache_file_goes_through_the_store(write_sweep, monkeypatch, tmp_path):
    from tlr_ray.search import cache_file
    sweep = load_sweep(write_sweep(search={"task": "nli", "params": {"lr": {"choice": [1e-3, 1e-4]}}}))
    local = cache_file(sweep, str(tmp_path / "store"))
    assert isinstance(local, Path) and local.parent == tmp_path / "store" / "searches"
    monkeypatch.setitem(store.FILESYSTEMS, "mock", mock := _MockFileSystem())
    cached = cache_file(sweep, "mock://bucket/root")
    assert cached.name == local.name and str(cached) == f"mock://bucket/root/searches/{local.name}"
    assert not cached.is_file()
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text('{"params": {"lr": 0.001}}')
    assert cached.is_file() and json.loads(cached.read_text()) == {"params": {"lr": 0.001}}
    assert kind(mock, f"bucket/root/searches/{local.name}") == pafs.FileType.File


def test_report_of_a_remote_store_is_uploaded(monkeypatch):
    from analysis import report
    from tlr_ray.sweep import write_report
    written = []

    def fake_report(argv):  # what analysis.report writes: the page, and for html its figure
        out = Path(argv[argv.index("--out") + 1])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(f"report {out.name}")
        if out.suffix == ".html":
            out.with_name("report-summary.png").write_bytes(b"png")
        written.append(out)
        return 0
    monkeypatch.setattr(report, "main", fake_report)
    monkeypatch.setitem(store.FILESYSTEMS, "mock", mock := _MockFileSystem())
    write_report("demo", "sqlite:///unused.db", "mock://bucket/root")
    for name, data in (("report.md", b"report report.md"), ("report.html", b"report report.html"),
                       ("report-summary.png", b"png")):
        assert store.read_bytes(mock, f"bucket/root/reports/demo/{name}") == data
    assert written and not written[0].parent.exists()  # the local temp folder is gone


def test_mlflow_artifact_root_of_a_remote_store(tmp_path):
    from tlr_ray.tracking import Tracker
    root = (tmp_path / "store").as_uri()
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "demo", artifact_root=store.join(root, "mlflow-artifacts"))
    location = tracker.client.get_experiment(tracker.experiment_id).artifact_location
    assert location == f"{root}/mlflow-artifacts/demo"


def test_publish_over_a_damaged_artifact_replaces_it(storage):
    publish(storage, weights=b"first attempt")
    fs, folder = fs_path(storage, "jobs", JOB.id)
    with fs.open_output_stream(f"{folder}/adapter/weights.bin") as f:
        f.write(b"first")
    publish(storage)  # no verify in between: publish itself finds the damaged one and moves it aside
    assert artifacts.verify(storage, JOB.id)["files"]["adapter/weights.bin"] == \
        artifacts._file_sha256(artifacts.local_copy(storage, JOB.id) / "adapter" / "weights.bin")
    assert (artifacts.local_copy(storage, JOB.id) / "adapter" / "weights.bin").read_bytes() == WEIGHTS
    assert files_under(storage, "corrupt")


@pytest.mark.parametrize("storage", ["mock", "file"], indirect=True)
def test_remote_publish_uploads_the_manifest_last(storage, monkeypatch):
    order, upload, write_bytes = [], store.upload, store.write_bytes
    monkeypatch.setattr(store, "upload", lambda fs, local, path: order.append(path) or upload(fs, local, path))
    monkeypatch.setattr(store, "write_bytes", lambda fs, path, data: order.append(path) or write_bytes(fs, path, data))
    publish(storage)
    _, folder = fs_path(storage, "jobs", JOB.id)
    assert [p[len(folder) + 1:] for p in order] == [
        "adapter/adapter_config.json", "adapter/weights.bin", "predictions.parquet", "manifest.json"]


def test_only_failed_writes_are_taken_for_a_full_disk():
    """runner.is_write_failure: a job's error is reported as a full disk only when a write failed (an
    errno, or torch's/safetensors' own words for it), never for our own checks' errors."""
    import errno

    from tlr_ray.domains import ModelFitError
    from tlr_ray.runner import is_write_failure
    assert is_write_failure(OSError(errno.ENOSPC, "No space left on device"))
    assert is_write_failure(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 960 vs 854"))
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as inner:
            raise RuntimeError("saving failed") from inner
    except RuntimeError as outer:
        assert is_write_failure(outer)  # the cause counts
    assert not is_write_failure(RuntimeError("loss is nan at step 4: training diverged"))
    assert not is_write_failure(ModelFitError("task_adapters.reduction_factor: 3 is not allowed"))
    assert not is_write_failure(OSError(errno.EROFS, "Read-only file system"))  # reported as it is
