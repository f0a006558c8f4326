"""Tasks: a task is data, a head and a metric. It knows nothing of Ray, variants or adapters' cycling.

Every task module exposes one object satisfying `Task` below; `get_task(name)` returns it.
The training recipes in `tlr_ray.train` only talk to tasks through this interface.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class DataSource:
    """Where one dataset's examples come from: the Hub, or local files in the dataset's native format.

    Exactly one of `hub_id` / `local_path` is set. `config` and `data_dir` may contain "{lang}", which is
    replaced by the dataset-specific language code being loaded (e.g. "xnli" config "{lang}" -> "sw").
    """

    dataset: str                      # catalog name, e.g. "americas_nli"; used in error messages
    hub_id: str | None = None
    revision: str | None = None
    config: str | None = None
    data_dir: str | None = None
    local_path: str | None = None     # a file or folder, resolved to an absolute path by the config loader
    local_format: str | None = None   # e.g. "multinli-jsonl", "americasnli-tsv", "xnli-tsv"
    splits: dict[str, str] = field(default_factory=dict)  # our split name -> the source's split name

    def describe(self) -> str:
        if self.hub_id:
            extra = ", ".join(f"{k}={v}" for k, v in (("revision", self.revision), ("config", self.config),
                                                     ("data_dir", self.data_dir)) if v)
            return f"Hub dataset {self.hub_id}" + (f" ({extra})" if extra else "")
        return f"local {self.local_format} files at {self.local_path}"


class Task(Protocol):
    name: str            # "nli"
    metric: str          # the model-selection metric name, e.g. "accuracy"; values are percentages (0-100)

    def load(self, source: DataSource, split: str, language: str | None) -> Any:
        """Raw examples of one split (our names: train / validation / test) as a `datasets.Dataset`,
        schema-checked: raises `DataError` naming the dataset, source and what was expected."""

    def tokenize(self, examples: Any, tokenizer: Any, max_length: int) -> Any:
        """Model inputs as a `datasets.Dataset` (input_ids, attention_mask, labels, ...)."""

    def collate(self, features: list[dict], tokenizer: Any) -> dict:
        """A batch of tensors for `model(**batch)`; `labels` included so the output has `.loss`."""

    def add_head(self, model: Any, name: str) -> None:
        """Add this task's `adapters` prediction head called `name` to a flexible-head model."""

    def evaluate(self, model: Any, tokenized: Any, tokenizer: Any, batch_size: int,
                 device: Any) -> tuple[dict[str, float], list[dict]]:
        """(metrics in percent, per-example predictions) for the model's active setup, in eval mode."""


class DataError(ValueError):
    """A dataset is missing, malformed or has an unexpected schema."""


def get_task(name: str) -> Task:
    from tlr_ray.tasks import nli  # noqa: PLC0415  (imports torch; keep `tlr_ray.tasks` import-light)

    tasks = {"nli": nli.TASK}
    if name not in tasks:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(tasks))}")
    return tasks[name]
