"""Significance of a variant's gain over the baseline, marked the way the TLR paper does.

A *best* (bold) cell of a non-baseline row gets an asterisk when its gain over the baseline on
that language is NOT significant (p >= alpha, default 0.05, or no gain at all). Only bold language
cells are tested: that is all the mark speaks about. Bold is `analysis.table.bold_cells`, so the
mark follows the table's rules: a row kept out of bold (the ablations LEAVE-OUT-TASK/-TARG under
the paper's rules) is never tested or marked, even where it is higher. A bold avg is not tested
(the tests are per language). Which test (docs/report.md):

- several seeds on both sides: Student's t-test over the per-seed scores, `ttest_ind` (default),
  `ttest_rel` (paired by seed, on the seeds both have) or `welch` (ttest_ind, equal_var=False);
- one seed on both sides: a test over examples from the runs' predictions.parquet: a paired
  t-test (scipy.stats.ttest_rel) on per-example scores where the metric is their mean (nli, pos
  accuracy; QA F1/EM), else a seeded paired bootstrap of the corpus-level metric (NER F1, DP LAS).

All p-values are two-sided. A cell that cannot be tested (no predictions, different seed counts)
is never marked; the note under the table says which cells and why.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from analysis import predictions
from analysis.table import bold_cells, row_labels, value_columns

SEED_TESTS = {"ttest_ind": "Student's t-test over seeds, scipy.stats.ttest_ind",
              "ttest_rel": "t-test over seeds paired by seed, scipy.stats.ttest_rel",
              "welch": "Welch's t-test over seeds, scipy.stats.ttest_ind(equal_var=False)"}
NO_ARTIFACTS = ("single seed, and the results carry no artifact paths to read per-example "
                "predictions from (a Parquet export has none: report from mlflow:<sweep>)")


class Untestable(Exception):
    """Why a cell cannot be tested; it is then left unmarked."""


@dataclass
class Marks:
    """Significance marks of one table: cells to star, p-values of tested cells, and the note."""
    alpha: float = 0.05
    baseline: str | None = None
    stars: set = field(default_factory=set)        # (row, column)
    pvalues: dict = field(default_factory=dict)    # (row, column) -> p
    methods: set = field(default_factory=set)      # descriptions of the tests that ran
    untested: dict = field(default_factory=dict)   # reason -> [(row, column)]

    def note(self) -> str:
        """Plain text (formats escape it): which test produced the marks, and what is unmarked."""
        if self.baseline is None:
            return "Significance: not tested (no baseline row)."
        parts = []
        if self.methods:
            parts.append(f"* = best score whose gain over {self.baseline} is not significant at "
                         f"p < {self.alpha:g} ({'; '.join(sorted(self.methods))}; two-sided).")
        elif not self.untested:
            parts.append(f"Significance: no variant is best on a language where {self.baseline} "
                         "has a score; nothing to test.")
        for reason, cells in self.untested.items():
            where = ", ".join(f"{r} on {c}" for r, c in cells)
            parts.append(f"Not tested, so not marked ({where}): {reason}.")
        return " ".join(parts)


def seed_test(variant: dict[int, float], baseline: dict[int, float],
              test: str = "ttest_ind") -> float:
    """Two-sided p of the difference over seeds ({seed: score} each side)."""
    if test not in SEED_TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {', '.join(SEED_TESTS)}")
    # scipy warns about near-identical data (e.g. one side constant); p is still what it is.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if test == "ttest_rel":
            common = sorted(set(variant) & set(baseline))
            if len(common) < 2:
                raise Untestable("fewer than two seeds in common with the baseline (ttest_rel)")
            return float(stats.ttest_rel([variant[s] for s in common],
                                         [baseline[s] for s in common]).pvalue)
        a, b = [variant[s] for s in sorted(variant)], [baseline[s] for s in sorted(baseline)]
        return float(stats.ttest_ind(a, b, equal_var=test != "welch").pvalue)


def paired_ttest(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p of a paired t-test on per-example scores (system a vs b, same examples)."""
    with warnings.catch_warnings():   # identical systems: NaN p, read as "not significant"
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_rel(np.asarray(a, float), np.asarray(b, float)).pvalue)


def paired_bootstrap(a_parts: np.ndarray, b_parts: np.ndarray, metric, resamples: int = 1000,
                     seed: int = 0) -> float:
    """Two-sided p of a paired bootstrap of metric(a) - metric(b).

    Each resample draws the same examples (with replacement) for both systems and recomputes the
    corpus-level metric from the summed per-example statistics. p = 2 * min(share of resampled
    differences <= 0, share >= 0), each with the usual +1 correction so p is never 0 from a finite
    number of resamples; capped at 1.
    """
    a, b = np.asarray(a_parts, float), np.asarray(b_parts, float)
    if a.shape != b.shape or len(a) == 0:
        raise ValueError("paired bootstrap needs the same non-empty examples: "
                         f"{a.shape} vs {b.shape}")
    rng = np.random.default_rng(seed)
    n, below, above = len(a), 0, 0
    chunk = max(1, 2_000_000 // n)   # bounds memory: chunk x n indices at a time
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        diff = metric(a[idx].sum(axis=1)) - metric(b[idx].sum(axis=1))
        below += int((diff <= 0).sum())
        above += int((diff >= 0).sum())
    return min(1.0, 2 * min(below + 1, above + 1) / (resamples + 1))


def example_test(v: predictions.ExampleScores, b: predictions.ExampleScores,
                 resamples: int = 1000, seed: int = 0) -> float:
    """p over examples: paired t-test where the metric is a mean, else paired bootstrap."""
    if len(v.keys) == 0 or len(v.keys) != len(b.keys) or not v.keys.isin(b.keys).all():
        raise Untestable("the two prediction files do not cover the same examples")
    b_order = b.keys.get_indexer(v.keys)
    if v.scores is not None:
        return paired_ttest(v.scores, b.scores[b_order])
    return paired_bootstrap(v.parts, b.parts[b_order], v.metric, resamples, seed)


def _method(task: str, metric: str, unit: str, resamples: int, seed: int) -> str:
    if predictions.decomposes(task, metric):
        return f"paired t-test over {unit}s of per-{unit} {metric}, scipy.stats.ttest_rel"
    return (f"paired bootstrap over {unit}s of corpus-level {metric}, "
            f"{resamples} resamples, seed {seed}")


class _Tester:
    """Tests the bold cells of one table; caches loaded predictions (a baseline serves many)."""

    def __init__(self, table, data, test, resamples, seed):
        self.table, self.test, self.resamples, self.seed = table, test, resamples, seed
        self.task, self.metric = table.attrs["task"], table.attrs["metric"]
        sel = data[(data["task"] == self.task) & (data["dataset"] == table.attrs["dataset"])
                   & (data["metric"] == self.metric)]
        self.sel = sel.assign(row=row_labels(sel), LANG=sel["language"].str.upper())
        self.cache: dict = {}

    def _cell(self, row: str, col: str) -> pd.DataFrame:
        return self.sel[(self.sel["row"] == row) & (self.sel["LANG"] == col)]

    def _scores(self, cell: pd.DataFrame) -> predictions.ExampleScores:
        artifact = cell["artifact"].iloc[0] if "artifact" in cell else None
        if artifact is None:
            raise Untestable(NO_ARTIFACTS if "artifact" not in self.sel else
                             "single seed, and a run has no artifact path (tag `artifact`)")
        if artifact not in self.cache:
            try:
                scores = predictions.load(artifact, self.task, self.metric)
            except (OSError, ValueError) as e:
                scores = Untestable(f"per-example predictions unreadable: {e}")
            self.cache[artifact] = scores
        if isinstance(self.cache[artifact], Untestable):
            raise self.cache[artifact]
        scores = self.cache[artifact]
        logged = float(cell["value"].iloc[0])
        if abs(scores.value() - logged) > 0.01:   # the file does not belong to this score
            warnings.warn(f"{artifact}: predictions give {self.metric} {scores.value():.4f}, the "
                          f"run logged {logged:.4f}", stacklevel=4)
        return scores

    def pvalue(self, row: str, baseline: str, col: str) -> tuple[float, str]:
        v, b = self._cell(row, col), self._cell(baseline, col)
        if len(v) >= 2 and len(b) >= 2:
            p = seed_test(dict(zip(v["seed"], v["value"], strict=True)), dict(zip(b["seed"], b["value"], strict=True)),
                          self.test)
            return p, SEED_TESTS[self.test]
        if len(v) != 1 or len(b) != 1:
            raise Untestable(f"different numbers of seeds ({len(v)} vs {len(b)} for the baseline)")
        if not predictions.supported(self.task, self.metric):
            raise Untestable(f"single seed, and no per-example scorer for {self.task} "
                             f"{self.metric}")
        vs, bs = self._scores(v), self._scores(b)
        p = example_test(vs, bs, self.resamples, self.seed)
        return p, _method(self.task, self.metric, vs.unit, self.resamples, self.seed)


def table_marks(table: pd.DataFrame, data: pd.DataFrame, test: str = "ttest_ind",
                alpha: float = 0.05, resamples: int = 1000, seed: int = 0) -> Marks:
    """Marks for one table of `analysis.table.paper_tables`; `data` is the tidy table it came
    from (with the optional `artifact` column for tests over examples)."""
    if test not in SEED_TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {', '.join(SEED_TESTS)}")
    baseline = table.attrs.get("baseline")
    marks = Marks(alpha=alpha, baseline=baseline)
    if baseline is None:
        return marks
    tester = _Tester(table, data, test, resamples, seed)
    bold = bold_cells(table)
    for col in value_columns(table):          # languages; avg is not tested
        if pd.isna(table.at[baseline, col]):
            continue
        for row in table.index:
            v = table.at[row, col]
            if row == baseline or (row, col) not in bold:
                continue
            try:
                p, method = tester.pvalue(row, baseline, col)
            except Untestable as e:
                marks.untested.setdefault(str(e), []).append((row, col))
                continue
            marks.pvalues[(row, col)] = p
            marks.methods.add(method)
            # NaN p (no variance at all) is no evidence of a gain: not significant.
            if not (p < alpha and v > table.at[baseline, col]):
                marks.stars.add((row, col))
    return marks
