"""What a task is and what it reads, for the task modules and the rest of the code alike: the Task
interface, a dataset's source (DataSource) and the error of bad data (DataError). Kept apart from
`tlr_ray.tasks` (which finds and imports the task modules) so that the task modules import this and never
their package: no import cycle, lazy imports included (tests/test_layers.py)."""
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
    metric: str          # the model-selection metric, TASKS[name].metric (registry.py); values in percent (0-100)

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
