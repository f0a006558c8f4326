"""QA: extractive span question answering (SQuAD v1.1 -> XQuAD, TyDiQA-GoldP), scored by SQuAD F1 / EM.

`load` returns a `datasets.Dataset` with exactly `id`, `context`, `question`, `answers` ({"text": [...],
"answer_start": [character offsets]}) and checks every answer against its context. `tokenize` splits
long contexts into overlapping windows ("features"); each keeps, beside the model inputs, what
`evaluate` needs to map logits back to text (example index and id, the context, the gold answers and the
offset mapping with non-context tokens masked). `collate` drops those extras, so the same tokenized set
serves training (start/end positions as labels) and evaluation (logits -> best span over all windows).
Options (`tasks.qa.options` in a sweep): doc_stride, max_answer_length, n_best.
"""
from __future__ import annotations

import collections
import logging
from typing import Any

import datasets
import torch
from transformers import DataCollatorWithPadding

from tlr_ray.tasks.base import DataError, DataSource
from tlr_ray.tasks.common import dispatch, feature_batches, require_columns, where
from tlr_ray.tasks.qa_sources import load_hub, read_local
from tlr_ray.tasks.registry import TASKS
from tlr_ray.tasks.squad_metric import Window, best_over_gold, best_span, exact_match, f1_score

log = logging.getLogger(__name__)

COLUMNS = ("id", "context", "question", "answers")
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions")
LABELS = ("start_positions", "end_positions")
OPTIONS = {"doc_stride": 128, "max_answer_length": 30, "n_best": 20}   # MAD-X / HF run_qa defaults


class QaTask:
    name = "qa"
    metric = TASKS["qa"].metric

    def __init__(self, doc_stride: int, max_answer_length: int, n_best: int):
        self.doc_stride, self.max_answer_length, self.n_best = doc_stride, max_answer_length, n_best

    def load(self, source: DataSource, split: str, language: str | None) -> datasets.Dataset:
        return _checked(dispatch(source, split, language, _read_local_dataset, load_hub),
                        where(source, split, language))

    def tokenize(self, examples: datasets.Dataset, tokenizer: Any, max_length: int) -> datasets.Dataset:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("the qa task needs a fast tokenizer: windows are mapped back to text through "
                             "its offset mappings")
        # Questions longer than half the window are cut, so every window keeps room for context.
        max_question = max_length // 2
        full = [len(ids) for ids in
                tokenizer([q.lstrip() for q in examples["question"]], add_special_tokens=False)["input_ids"]]
        longest = min(max(full, default=0), max_question)
        room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - longest
        # The tokenizer needs stride < the context room (it panics otherwise): a doc_stride made for
        # 384-token windows is halved to fit short ones (the demo's 64), with a warning.
        stride = max(0, min(self.doc_stride, room // 2))
        if stride < self.doc_stride:
            log.warning("qa: doc_stride %d does not fit windows of %d tokens with questions of up to %d "
                        "tokens; using stride %d", self.doc_stride, max_length, longest, stride)
        cls_id = tokenizer.cls_token_id

        def encode(batch: dict, indices: list[int]) -> dict:
            questions = [_clip(q.lstrip(), max_question, tokenizer) if full[i] > max_question else q.lstrip()
                         for q, i in zip(batch["question"], indices, strict=True)]
            enc = tokenizer(questions, batch["context"], truncation="only_second", max_length=max_length,
                            stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
            samples, offsets = enc.pop("overflow_to_sample_mapping"), enc.pop("offset_mapping")
            extra = {k: [] for k in ("offset_mapping", "example_index", "example_id", "context", "answers",
                                     *LABELS)}
            for i, (j, window) in enumerate(zip(samples, offsets, strict=True)):
                masked = [tuple(o) if s == 1 else None for o, s in zip(window, enc.sequence_ids(i), strict=True)]
                cls = enc["input_ids"][i].index(cls_id) if cls_id in enc["input_ids"][i] else 0
                start, end = _positions(masked, batch["answers"][j], cls)
                for key, value in (("offset_mapping", masked), ("example_index", indices[j]),
                                   ("example_id", batch["id"][j]), ("context", batch["context"][j]),
                                   ("answers", batch["answers"][j]), ("start_positions", start),
                                   ("end_positions", end)):
                    extra[key].append(value)
            return {**enc, **extra}

        return examples.map(encode, batched=True, with_indices=True, remove_columns=examples.column_names,
                            desc="tokenize qa")

    def collate(self, features: list[dict], tokenizer: Any) -> dict:
        model_inputs = [{k: f[k] for k in MODEL_INPUTS if k in f} for f in features]
        return DataCollatorWithPadding(tokenizer, return_tensors="pt")(model_inputs)

    def add_head(self, model: Any, name: str) -> None:
        model.add_qa_head(name)

    def evaluate(self, model: Any, tokenized: datasets.Dataset, tokenizer: Any, batch_size: int,
                 device: Any) -> tuple[dict[str, float], list[dict]]:
        """SQuAD F1 / EM in percent over examples (not windows), and one record per example: id,
        prediction, gold answers, f1 and exact_match (percent, so their means are the metrics)."""
        device = torch.device(device) if device is not None else next(model.parameters()).device
        windows: dict[int, list[Window]] = collections.defaultdict(list)
        raw: dict[int, tuple[str, str, list[str]]] = {}
        model.eval()
        with torch.no_grad():
            for _, features in feature_batches(tokenized, batch_size):
                batch = {k: v for k, v in self.collate(features, tokenizer).items() if k not in LABELS}
                out = model(**{k: v.to(device) for k, v in batch.items()})
                starts, ends = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
                for f, s, e in zip(features, starts, ends, strict=True):
                    n = len(f["input_ids"])
                    windows[f["example_index"]].append(Window(s[:n], e[:n], f["offset_mapping"]))
                    raw.setdefault(f["example_index"], (f["example_id"], f["context"], f["answers"]["text"]))
        if not windows:
            raise DataError("nothing to evaluate: the tokenized split is empty")
        records = []
        for index in sorted(windows):
            example_id, context, golds = raw[index]
            span = best_span(windows[index], context, self.n_best, self.max_answer_length)
            prediction = span.text if span else ""
            records.append({"index": index, "id": example_id, "prediction": prediction, "answers": list(golds),
                            "f1": 100.0 * best_over_gold(f1_score, prediction, golds),
                            "exact_match": 100.0 * best_over_gold(exact_match, prediction, golds)})
        metrics = {k: sum(r[k] for r in records) / len(records) for k in ("f1", "exact_match")}
        return metrics, records


def _clip(question: str, max_tokens: int, tokenizer: Any) -> str:
    """The question cut after its first `max_tokens` tokens (almost always unchanged)."""
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    return question if len(enc["input_ids"]) <= max_tokens else question[:enc["offset_mapping"][max_tokens - 1][1]]


def _positions(offsets: list, answers: dict, cls: int) -> tuple[int, int]:
    """Token indices of the first gold answer in one window, or (cls, cls) when it is not inside it
    (the SQuAD v1.1 convention of the reference scripts)."""
    if not answers["text"]:
        return cls, cls
    first_char = answers["answer_start"][0]
    end_char = first_char + len(answers["text"][0])
    context = [k for k, o in enumerate(offsets) if o is not None]
    if not context or offsets[context[0]][0] > first_char or offsets[context[-1]][1] < end_char:
        return cls, cls
    start = next(k for k in context if offsets[k][1] > first_char)
    end = next(k for k in reversed(context) if offsets[k][0] < end_char)
    return start, end




def _read_local_dataset(source: DataSource, split: str, language: str | None) -> datasets.Dataset:
    return datasets.Dataset.from_dict(read_local(source, split, language), features=_FEATURES)


_FEATURES = datasets.Features({
    "id": datasets.Value("string"), "context": datasets.Value("string"), "question": datasets.Value("string"),
    "answers": {"text": datasets.List(datasets.Value("string")),
                "answer_start": datasets.List(datasets.Value("int32"))}})


def _checked(ds: datasets.Dataset, where: str) -> datasets.Dataset:
    """The schema every caller relies on: the four columns, at least one row, and every question with at
    least one answer whose text is found at its answer_start in the context."""
    expected = ("expected columns id, context, question, answers {text: [...], answer_start: [character "
                "offsets]} with at least one answer per question, each at its answer_start in the context")
    ds = require_columns(ds, COLUMNS, where, expected)
    bad = []
    for example_id, context, answers in zip(ds["id"], ds["context"], ds["answers"], strict=True):
        texts, starts = answers.get("text") or [], answers.get("answer_start") or []
        if not texts or len(texts) != len(starts):
            bad.append(f"{example_id}: {len(texts)} answer text(s) and {len(starts)} answer_start(s)")
        for text, start in zip(texts, starts, strict=False):
            if context[start:start + len(text)] != text:
                found = context[start:start + len(text)]
                bad.append(f"{example_id}: answer {text!r} at answer_start {start}, but the context has {found!r}")
    if bad:
        raise DataError(f"{where}: {len(bad)} bad answer(s), e.g. {'; '.join(bad[:3])}; {expected}")
    return ds


def make_task(**options) -> QaTask:
    """The QA task with the sweep's `tasks.qa.options` (each a positive integer, default in OPTIONS)."""
    valid = ", ".join(f"{k} (default {v})" for k, v in OPTIONS.items())
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown qa task option(s) {', '.join(map(repr, unknown))}; valid options: {valid}")
    values = {**OPTIONS, **options}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"qa task option {key} must be a positive integer, got {value!r}; valid options: {valid}")
    return QaTask(**values)
