"""Readers for extractive QA data in each dataset's native file format, and the Hub loader.

Every reader returns plain columns {"id", "context", "question", "answers": [{"text": [...],
"answer_start": [char offsets]}]} or raises `DataError` naming the file and what was expected. Formats:
- squad-json: the official SQuAD v1.1 JSON, {"data": [{"title", "paragraphs": [{"context", "qas": [{"id",
  "question", "answers": [{"text", "answer_start"}]}]}]}]}. A folder holding train-v1.1.json /
  dev-v1.1.json, or XQuAD's xquad.<lang>.json (same schema, one file per language), or one .json file.
- tydiqa-goldp: TyDiQA-GoldP v1.1, tydiqa-goldp-v1.1-{train,dev}.json, SQuAD schema with every language
  in one file and no language field: an id starts with the language's English name ("swahili-...").
  The official set has no Thai; if the folder also holds khalidalt/tydiqa-goldp's `dev/thai-dev.jsonl`,
  a language absent from the JSON is read from there (see tydiqa-goldp-jsonl).
- tydiqa-goldp-jsonl: khalidalt/tydiqa-goldp's per-language files `{dev,train}/<name>-{dev,train}.jsonl`,
  one object a line with passage_text, question_text, answers {text: [...], start_byte: [...]}; the
  offsets count UTF-8 bytes of passage_text and are converted to characters here.
Contexts are never stripped: leading whitespace is part of what answer_start counts.
"""
from __future__ import annotations

import json
from pathlib import Path

import datasets

from tlr_ray import languages
from tlr_ray.tasks.base import DataError, DataSource
from tlr_ray.tasks.common import hub_dataset, jsonl_records

# TyDiQA ids start with the language's English name; "yoruba" exists only in the demo world's file.
TYDIQA_NAMES = {"ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian",
                "ja": "japanese", "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu",
                "th": "thai", "yo": "yoruba"}
NO_THAI = ("TyDiQA-GoldP has no Thai; the reference took it from khalidalt/tydiqa-goldp: put its "
           "dev/thai-dev.jsonl in a local tydiqa-goldp folder beside tydiqa-goldp-v1.1-dev.json")
SPLIT_FILES = {  # per format: our / the source's split names -> file
    "squad-json": {"train": "train-v1.1.json", "validation": "dev-v1.1.json", "dev": "dev-v1.1.json"},
    "tydiqa-goldp": {"train": "tydiqa-goldp-v1.1-train.json", "validation": "tydiqa-goldp-v1.1-dev.json",
                     "dev": "tydiqa-goldp-v1.1-dev.json"},
    "tydiqa-goldp-jsonl": {"train": "train/{name}-train.jsonl", "validation": "dev/{name}-dev.jsonl",
                           "dev": "dev/{name}-dev.jsonl"},
}


def tydiqa_name(code: str) -> str:
    """The id prefix of a language in TyDiQA ("sw" and "swa" -> "swahili")."""
    try:
        key = code if code in TYDIQA_NAMES else languages.canonical(code)
    except languages.UnknownLanguage:
        key = code
    if key not in TYDIQA_NAMES:
        raise DataError(f"no TyDiQA language name known for code {code!r}; known: "
                        f"{', '.join(f'{c}={n}' for c, n in TYDIQA_NAMES.items())}")
    return TYDIQA_NAMES[key]


def read_local(source: DataSource, split: str, language: str | None) -> dict[str, list]:
    """Rows of one split (the source's split name) from local files in `source.local_format`."""
    fmt, path = source.local_format, Path(source.local_path or "")
    if fmt not in SPLIT_FILES:
        raise DataError(f"unknown local_format {fmt!r} for the qa task; known formats: {', '.join(SPLIT_FILES)}")
    if fmt == "squad-json" and path.is_file():
        return read_squad_json(path)
    if not path.is_dir():
        raise DataError(f"local_path {path} is not a folder; {fmt} expects a folder holding "
                        f"{', '.join(sorted(set(SPLIT_FILES[fmt].values())))}")
    files = SPLIT_FILES[fmt]
    if split not in files:
        raise DataError(f"no split {split!r} in {fmt} files; known splits: {', '.join(files)}")
    if fmt == "squad-json":   # XQuAD (one file per language, evaluation only) before SQuAD's own files
        xquad = [f"xquad.{language}.json"] if language and split != "train" else []
        return read_squad_json(_first(path, [*xquad, files[split]], f"{fmt} split {split!r}"))
    if not language:
        raise DataError(f"{fmt} data is multilingual, but no language code was given")
    name = tydiqa_name(language)
    per_language = [SPLIT_FILES["tydiqa-goldp-jsonl"][split].format(name=name),
                    Path(SPLIT_FILES["tydiqa-goldp-jsonl"][split].format(name=name)).name]
    if fmt == "tydiqa-goldp-jsonl":
        return read_tydiqa_jsonl(_first(path, per_language, f"{fmt} split {split!r}, language {language!r}"))
    rows = read_squad_json(_first(path, [files[split]], f"{fmt} split {split!r}"))
    keep = [i for i, id_ in enumerate(rows["id"]) if id_.startswith(f"{name}-")]
    if keep:
        return {k: [v[i] for i in keep] for k, v in rows.items()}
    jsonl = next((path / f for f in per_language if (path / f).is_file()), None)
    if jsonl is not None:    # e.g. Thai, which the official GoldP set lacks
        return read_tydiqa_jsonl(jsonl)
    present = sorted({id_.split("-", 1)[0] for id_ in rows["id"]})
    raise DataError(f"{path / files[split]}: no questions with id prefix {name + '-'!r} (language "
                    f"{language!r}); languages in the file: {', '.join(present) or 'none'}"
                    + (f". {NO_THAI} (as {per_language[0]} in {path})" if name == "thai" else ""))


def _first(folder: Path, names: list[str], what: str) -> Path:
    """The first of `names` that exists in `folder`; the error lists what was looked for."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"missing file: {what} expects {' or '.join(names)} in {folder}")


def _load_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not JSON ({e}); expected {what}") from None


def read_squad_json(path: Path) -> dict[str, list]:
    """The SQuAD v1.1 schema, flattened to one row per question."""
    expected = 'the SQuAD v1.1 schema {"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}'
    doc = _load_json(path, expected)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f"{path}: no top-level 'data' list; expected {expected}")
    rows: dict[str, list] = {"id": [], "context": [], "question": [], "answers": []}
    for a, article in enumerate(doc["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            if "context" not in paragraph or "qas" not in paragraph:
                raise DataError(f"{where}: missing key context or qas; expected {expected}")
            for qa in paragraph["qas"]:
                missing = [k for k in ("id", "question", "answers") if k not in qa]
                if missing:
                    raise DataError(f"{where}, question {qa.get('id', '?')}: missing key(s) "
                                    f"{', '.join(missing)}; expected id, question, answers [{{text, answer_start}}]")
                try:
                    answers = {"text": [x["text"] for x in qa["answers"]],
                               "answer_start": [int(x["answer_start"]) for x in qa["answers"]]}
                except (KeyError, TypeError, ValueError):
                    raise DataError(f"{where}, question {qa['id']}: answers must be a list of "
                                    "{text, answer_start (int)}") from None
                rows["id"].append(str(qa["id"]))
                rows["context"].append(paragraph["context"])
                rows["question"].append(qa["question"])
                rows["answers"].append(answers)
    return rows


def read_tydiqa_jsonl(path: Path) -> dict[str, list]:
    """khalidalt/tydiqa-goldp JSONL: byte offsets into passage_text become character offsets."""
    rows: dict[str, list] = {"id": [], "context": [], "question": [], "answers": []}
    for n, where, obj in jsonl_records(path, ("passage_text", "question_text", "answers"), "TyDiQA-GoldP"):
        passage = obj["passage_text"]
        raw = passage.encode("utf-8")
        answers = obj["answers"]
        if not isinstance(answers, dict) or not {"text", "start_byte"} <= answers.keys():
            raise DataError(f"{where}: answers must be {{text: [...], start_byte: [...]}}")
        texts, starts = (x if isinstance(x, list) else [x] for x in (answers["text"], answers["start_byte"]))
        chars = []
        for start in starts:
            try:   # decoding the bytes before the answer tells how many characters precede it
                chars.append(len(raw[:int(start)].decode("utf-8")))
            except UnicodeDecodeError:
                raise DataError(f"{where}: start_byte {start} falls inside a multi-byte character; "
                                "expected UTF-8 byte offsets into passage_text") from None
        rows["id"].append(str(obj.get("id", f"{path.stem}-{n}")))
        rows["context"].append(passage)
        rows["question"].append(obj["question_text"])
        rows["answers"].append({"text": list(texts), "answer_start": chars})
    return rows


def load_hub(source: DataSource, split: str, language: str | None) -> datasets.Dataset:
    """One split from the Hub. A mixed-language set (TyDiQA: ids "<language name>-...") is filtered to the
    language when its config is not per-language."""
    ds = hub_dataset(source, split, language)
    per_language = "{lang}" in (source.config or "") + (source.data_dir or "")
    if language and not per_language and "id" in ds.column_names and len(ds):
        prefixes = {str(i).split("-", 1)[0] for i in ds[:100]["id"]}
        if prefixes & set(TYDIQA_NAMES.values()):
            name = tydiqa_name(language)
            mixed, ds = ds, ds.filter(lambda i: i.startswith(f"{name}-"), input_columns="id")
            if not len(ds):
                present = sorted({str(i).split("-", 1)[0] for i in mixed["id"]})
                raise DataError(f"no questions with id prefix {name + '-'!r} (language {language!r}); "
                                f"languages in the split: {', '.join(present)}"
                                + (f". {NO_THAI}" if name == "thai" else ""))
    return ds
