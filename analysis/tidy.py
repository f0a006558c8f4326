"""The tidy results table: one row per (eval run, variant it counts for, metric).

Columns (in this order): sweep, task, dataset, variant, seed, ratio, language, metric, value.
`seed` is an int, `ratio` a str or None (not applicable), `value` a float in percent (0-100).
One optional extra column may follow: `artifact` (str or None), the eval job's artifact folder
(tag `artifact`, holding predictions.parquet). `from_mlflow` adds it when a run carries the tag;
the Parquet export leaves it out (the export contract is TIDY_COLUMNS exactly).
Sources: an MLflow experiment (one per sweep, see docs/results.md for the tag/metric contract) or
the Parquet export of one. mlflow is imported lazily so reading Parquet stays cheap.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

TIDY_COLUMNS = ["sweep", "task", "dataset", "variant", "seed", "ratio", "language", "metric",
                "value"]
# Extra columns a tidy table may carry after TIDY_COLUMNS; never part of a measurement's key.
OPTIONAL_COLUMNS = ["artifact"]
_STR_COLUMNS = ["sweep", "task", "dataset", "variant", "language", "metric"]
# One measurement is identified by everything but its value; a repeat means a run was counted twice.
_KEY_COLUMNS = [c for c in TIDY_COLUMNS if c != "value"]
_REQUIRED_TAGS = ("task", "dataset", "seed")


def _normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Coerce dtypes so MLflow, Parquet and hand-made tables compare equal.

    `ratio` is forced to an object column holding None: pandas 3 would otherwise infer a string
    dtype that turns None into NaN, and "" (the tag's "not applicable") means the same as None.
    """
    extra = [c for c in OPTIONAL_COLUMNS if c in df.columns]
    out = pd.DataFrame({c: df[c] for c in TIDY_COLUMNS + extra}).reset_index(drop=True)
    for col in _STR_COLUMNS:
        out[col] = out[col].astype(str)
    out["seed"] = out["seed"].astype("int64")
    out["value"] = out["value"].astype("float64")
    out["ratio"] = pd.Series(
        [None if (pd.isna(r) or r == "") else str(r) for r in out["ratio"]], dtype=object)
    for col in extra:  # like ratio: None (not NaN, not "") when a run has no artifact
        out[col] = pd.Series([None if (pd.isna(a) or a == "") else str(a) for a in out[col]],
                             dtype=object)
    return out


def validate(df: pd.DataFrame) -> pd.DataFrame:
    """Check `df` is a tidy table; return it normalized. Raises ValueError naming the problem."""
    columns = list(df.columns)
    if columns[:len(TIDY_COLUMNS)] != TIDY_COLUMNS or not set(columns[len(TIDY_COLUMNS):]) \
            <= set(OPTIONAL_COLUMNS) or len(set(columns)) != len(columns):
        missing = [c for c in TIDY_COLUMNS if c not in df.columns]
        extra = [c for c in df.columns if c not in TIDY_COLUMNS + OPTIONAL_COLUMNS]
        raise ValueError(f"not a tidy results table: expected columns {TIDY_COLUMNS} "
                         f"(optionally followed by {OPTIONAL_COLUMNS}), got {list(df.columns)} "
                         f"(missing {missing}, unexpected {extra})")
    for col in [c for c in TIDY_COLUMNS if c != "ratio"]:
        if df[col].isna().any():
            raise ValueError(f"tidy table has missing values in column {col!r}")
    try:
        out = _normalize(df)
    except (TypeError, ValueError) as e:
        raise ValueError(f"tidy table has values of the wrong type: {e}") from e
    dup = out.duplicated(subset=_KEY_COLUMNS, keep=False)
    if dup.any():
        raise ValueError("tidy table has repeated measurements (same key, several values):\n"
                         + out[dup].head(10).to_string(index=False))
    return out


def empty() -> pd.DataFrame:
    """A tidy table with no rows (and the right dtypes)."""
    return _normalize(pd.DataFrame({c: [] for c in TIDY_COLUMNS}))


def has_artifacts(df: pd.DataFrame) -> bool:
    """Whether any row names its artifact folder (so per-example predictions can be read)."""
    return "artifact" in df.columns and df["artifact"].notna().any()


def to_parquet(df: pd.DataFrame, path: str | Path, keep_artifact: bool = False) -> None:
    """Write the tidy table. The export contract is TIDY_COLUMNS exactly, so `artifact` is
    dropped unless asked for (`from_parquet` reads either)."""
    out = validate(df)
    if not keep_artifact:
        out = out[TIDY_COLUMNS]
    out.to_parquet(path, engine="pyarrow", index=False)


def from_parquet(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such results file: {path}")
    return validate(pd.read_parquet(path, engine="pyarrow"))


def _check_sqlite_exists(tracking_uri: str | None) -> None:
    """Opening a missing SQLite store makes MLflow create an empty one; say so instead."""
    if tracking_uri and tracking_uri.startswith("sqlite:///") and ":memory:" not in tracking_uri:
        db = Path(tracking_uri[len("sqlite:///"):])  # SQLAlchemy: the rest is the (rel/abs) path
        if not db.is_file():
            raise ValueError(f"no MLflow store at {tracking_uri} (file {db} does not exist)")


def _run_rows(run, experiment: str) -> list[dict]:
    """Tidy rows of one FINISHED eval run; one per (variant in `variants`) x metric."""
    tags, run_id = run.data.tags, run.info.run_id
    missing = [t for t in _REQUIRED_TAGS if not tags.get(t)]
    if not (tags.get("variants") or tags.get("variant")):
        missing.append("variant")
    if missing:
        raise ValueError(f"eval run {run_id} lacks tag(s) {missing}")
    # `variants` lists every variant this (possibly shared) job counts for.
    variants = [v.strip() for v in (tags.get("variants") or tags["variant"]).split(",")]
    variants = list(dict.fromkeys(v for v in variants if v))
    base = {"sweep": tags.get("sweep") or experiment, "task": tags["task"],
            "dataset": tags["dataset"], "seed": int(tags["seed"]),
            "ratio": tags.get("ratio") or None, "artifact": tags.get("artifact") or None}
    rows = []
    for key, value in sorted(run.data.metrics.items()):
        parts = key.split("/", 2)
        # Only `<dataset>/<language>/<metric>` of the run's own dataset; losses etc. are skipped.
        if len(parts) != 3 or parts[0] != tags["dataset"]:
            continue
        if pd.isna(value):  # a NaN score cannot be ranked or averaged; keep it visible as missing
            warnings.warn(f"eval run {run_id}: metric {key} is NaN, skipped", stacklevel=3)
            continue
        for variant in variants:
            rows.append({**base, "variant": variant, "language": parts[1], "metric": parts[2],
                         "value": float(value)})
    if not rows:
        warnings.warn(f"eval run {run_id} (job {tags.get('job_id')}) has no "
                      f"'{tags['dataset']}/<language>/<metric>' metrics", stacklevel=3)
    return rows


def _latest_per_job(runs: list) -> list:
    """Keep one run per job_id (the latest started); a repeat is a bug upstream, so warn."""
    by_job: dict[str, list] = {}
    for run in runs:
        by_job.setdefault(run.data.tags.get("job_id") or run.info.run_id, []).append(run)
    kept = []
    for job, group in sorted(by_job.items()):
        group.sort(key=lambda r: (r.info.start_time or 0, r.info.end_time or 0))
        if len(group) > 1:
            warnings.warn(f"{len(group)} FINISHED eval runs for job {job!r}; using the latest "
                          f"({group[-1].info.run_id}), ignoring "
                          f"{[r.info.run_id for r in group[:-1]]}", stacklevel=3)
        kept.append(group[-1])
    return kept


def from_mlflow(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """The tidy table of one sweep's MLflow experiment.

    `tracking_uri` defaults to MLflow's own default (MLFLOW_TRACKING_URI if set). Only FINISHED
    runs tagged kind=eval count. `df.attrs["runs"]` is the number of eval runs used. When any run
    has an `artifact` tag, the table has the extra column `artifact` (None where a run lacks it).
    """
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    _check_sqlite_exists(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments(view_type=ViewType.ALL))
        raise ValueError(f"no MLflow experiment named {experiment!r} at "
                         f"{tracking_uri or 'the default tracking URI'}; existing: {names}")
    runs, token = [], None
    while True:  # search_runs pages; a sweep can have thousands of runs
        page = client.search_runs([exp.experiment_id], filter_string="tags.kind = 'eval'",
                                  run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    finished = _latest_per_job([r for r in runs if r.info.status == "FINISHED"])
    rows = [row for run in finished for row in _run_rows(run, experiment)]
    df = pd.DataFrame(rows, columns=TIDY_COLUMNS + ["artifact"])
    if df["artifact"].isna().all():  # optional: absent rather than a column of Nones
        df = df.drop(columns="artifact")
    df = validate(df) if rows else empty()
    df = df.sort_values(_KEY_COLUMNS, na_position="first", kind="stable").reset_index(drop=True)
    df.attrs["runs"] = len(finished)
    return df
