"""Universal Dependencies data for the `dp` and `pos` tasks: label sets, treebank choice, readers, and the
word -> sub-token alignment both tasks feed their heads with.

Every reader returns plain columns of *syntactic words* only: {"tokens": [[str]], "upos": [[str]],
"head": [[int]], "deprel": [[str]]}; multiword-token lines (id "2-3") and empty nodes (id "8.1") are dropped
because neither has a basic-tree head. Sources (facts from DATASETS.md, checked against UD 2.7):
- local format `conllu`: a folder holding UD-named files `<treebank>-ud-{train,dev,test}.conllu`, directly
  or one level down (the layout of a UD release, `UD_English-EWT/en_ewt-ud-train.conllu`), so one
  folder can serve a whole list of languages. Parsed with the `conllu` package, one sentence at a time so
  that an error can name its line.
- the Hub: `universal-dependencies/universal_dependencies` at `refs/convert/parquet` with
  `data_dir=<treebank>`; columns tokens, upos (ClassLabel), head and deprel (strings); multiword and empty
  rows carry head "None" or "_".
A dataset names languages by code ("af"), UD by treebank ("af_afribooms"): `TREEBANKS` maps one to the
other, and a Hub `data_dir` written "{lang}" is filled with the treebank, not the code.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import conllu
import datasets

from tlr_ray import languages
from tlr_ray.tasks.base import DataError, DataSource
from tlr_ray.tasks.common import dispatch, hub_dataset, where

log = logging.getLogger(__name__)

# The 37 universal relations of UD v2 (universaldependencies.org/u/dep/), in alphabetical order.
RELATIONS = ("acl", "advcl", "advmod", "amod", "appos", "aux", "case", "cc", "ccomp", "clf", "compound",
             "conj", "cop", "csubj", "dep", "det", "discourse", "dislocated", "expl", "fixed", "flat",
             "goeswith", "iobj", "list", "mark", "nmod", "nsubj", "nummod", "obj", "obl", "orphan",
             "parataxis", "punct", "reparandum", "root", "vocative", "xcomp")
# With subtypes kept (dp option strip_subtypes=false) the label set must still be fixed before training:
# these are the subtypes the UD guidelines list as universal / widely used; any other subtype is mapped to
# its base relation with a warning.
SUBTYPES = ("acl:relcl", "advcl:relcl", "advmod:emph", "aux:pass", "cc:preconj", "compound:lvc",
            "compound:prt", "compound:redup", "compound:svc", "csubj:pass", "det:numgov", "det:nummod",
            "det:poss", "det:predet", "expl:impers", "expl:pass", "expl:pv", "flat:foreign", "flat:name",
            "nmod:npmod", "nmod:poss", "nmod:tmod", "nsubj:pass", "nummod:gov", "obl:agent", "obl:arg",
            "obl:npmod", "obl:tmod")
# The 17 universal POS tags (universaldependencies.org/u/pos/); a tag's id is its index here.
UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X")

# language code (as the catalog writes it) -> UD 2.7 treebank (DATASETS.md). Komi-Zyrian also has kpv_ikdp.
TREEBANKS = {"en": "en_ewt", "af": "af_afribooms", "bm": "bm_crb", "eu": "eu_bdt", "kpv": "kpv_lattice",
             "mr": "mr_ufal", "mt": "mt_mudt", "myv": "myv_jr", "te": "te_mtg", "ug": "ug_udt",
             "wo": "wo_wtb"}
SPLIT_FILES = {"train": "train", "validation": "dev", "dev": "dev", "test": "test"}  # our split -> UD's
NOT_A_HEAD = ("None", "_", "", None)   # how the Hub conversion writes the head of multiword/empty rows


def _aliases(code: str) -> list[str]:
    """The code as given, then its canonical code and aliases: a sweep may write kv or kpv."""
    if not languages.is_known(code):
        return [code]
    lang = languages.LANGUAGES[languages.canonical(code)]
    return list(dict.fromkeys([code, lang.code, *lang.aliases]))


def treebank_of(code: str) -> str | None:
    return next((TREEBANKS[c] for c in _aliases(code) if c in TREEBANKS), None)


def read_checked(source: DataSource, split: str, language: str | None, columns: tuple[str, ...],
                 check: Callable[[dict[str, list], str], dict[str, list]]) -> dict[str, list]:
    """Word rows of one split (our split name) as plain columns, `columns` among them, from local CoNLL-U
    or the Hub (`common.dispatch`: errors start with where the data came from), then the task's own
    `check(columns, where)`. Returns the checked columns."""
    read = dispatch(source, split, language, read_local, load_hub, columns)
    return check(read, where(source, split, language))


def read_local(source: DataSource, split: str, language: str | None, columns: tuple[str, ...]) -> dict[str, list]:
    if source.local_format != "conllu":
        raise DataError(f"unknown local_format {source.local_format!r} for UD data; known formats: conllu")
    return read_conllu(conllu_file(Path(source.local_path), split, language))


def conllu_file(folder: Path, split: str, language: str | None) -> Path:
    """The `<treebank>-ud-<split>.conllu` file for `language` in `folder` (or one level down).

    The treebank is TREEBANKS' choice when that file is there, else the only treebank named `<code>_*`
    (UD names treebanks after the language: the demo's `sw_demo`). Without a language (a training split:
    the recipe does not pass one) the folder must hold exactly one treebank with that split."""
    if not folder.is_dir():
        raise DataError(f"local_path {folder} is not a folder; conllu expects a folder holding UD files "
                        "<treebank>-ud-{train,dev,test}.conllu (directly or in UD_* subfolders)")
    if split not in SPLIT_FILES:
        raise DataError(f"no split {split!r} in UD data; known splits: {', '.join(SPLIT_FILES)}")
    suffix = f"-ud-{SPLIT_FILES[split]}.conllu"
    found = {p.name[:-len(suffix)]: p for pattern in (f"*{suffix}", f"*/*{suffix}")
             for p in sorted(folder.glob(pattern))}
    if language is None:
        if len(found) == 1:
            return next(iter(found.values()))
        raise DataError(f"{'several' if found else 'no'} treebanks with a {split} split in {folder} "
                        f"({', '.join(found) or f'no *{suffix} file'}), and no language code to choose by; "
                        "point local.path at one treebank's folder")
    preferred = treebank_of(language)
    if preferred in found:
        return found[preferred]
    matches = [tb for tb in found if any(tb.startswith(f"{c}_") for c in _aliases(language))]
    if len(matches) == 1:
        return found[matches[0]]
    expected = f"{preferred}{suffix}" if preferred else f"{language}_<name>{suffix}"
    what = f"several treebanks for {language!r} ({', '.join(matches)})" if matches else "missing file"
    raise DataError(f"{what}: language {language!r} split {split!r} expects {expected} in {folder} or one "
                    f"folder down (found: {', '.join(p.name for p in found.values()) or 'none'})")


def read_conllu(path: Path) -> dict[str, list]:
    out: dict[str, list] = {"tokens": [], "upos": [], "head": [], "deprel": []}
    for start, block in _sentence_blocks(path):
        where = f"{path}, sentence at line {start}"
        try:
            sentences = conllu.parse(block)
        except conllu.exceptions.ParseException as e:
            raise DataError(f"{where}: not valid CoNLL-U ({e})") from None
        words = [t for s in sentences for t in s if isinstance(t["id"], int)]  # no "2-3", no "8.1"
        for t in words:
            if "deprel" not in t:
                raise DataError(f"{where}: word {t['id']} has {len(t)} fields; CoNLL-U lines have 10 "
                                "tab-separated fields")
            if t["head"] is None:
                raise DataError(f"{where}: word {t['id']} ({t['form']!r}) has no head; every word of a "
                                "basic UD tree needs one (0 = root)")
        for key, field in (("tokens", "form"), ("upos", "upos"), ("head", "head"), ("deprel", "deprel")):
            out[key].append([t[field] for t in words])
    return out


def _sentence_blocks(path: Path):
    """(first line number, text) of each blank-line-separated sentence."""
    lines: list[str] = []
    start = 1
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                if not lines:
                    start = n
                lines.append(line)
            elif lines:
                yield start, "".join(lines) + "\n"
                lines = []
    if lines:
        yield start, "".join(lines) + "\n"


def load_hub(source: DataSource, split: str, language: str | None, columns: tuple[str, ...]) -> dict:
    """One split from the Hub; "{lang}" in config/data_dir becomes the language's treebank."""
    fill = source.data_dir or ""
    if "{lang}" in (source.config or "") + fill:
        tb = treebank_of(language) if language else None
        if tb is None:
            raise DataError(f"no UD treebank known for language {language!r}: add it to TREEBANKS in "
                            "tlr_ray/tasks/ud_sources.py (known: "
                            + ", ".join(f"{k}={v}" for k, v in TREEBANKS.items()) + ")")
    else:
        tb = ""
    ds = hub_dataset(source, split, tb)
    wanted = ("tokens", "head", *columns)
    missing = [c for c in dict.fromkeys(wanted) if c not in ds.column_names]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)} (found: {', '.join(ds.column_names)}); "
                        f"expected UD columns {', '.join(dict.fromkeys(wanted))}")
    names = _class_names(ds.features.get("upos"))
    raw = ds.select_columns(list(dict.fromkeys(wanted))).to_dict()
    out: dict[str, list] = {c: [] for c in dict.fromkeys(wanted)}
    for i, heads in enumerate(raw["head"]):
        keep = [j for j, h in enumerate(heads) if h not in NOT_A_HEAD]   # multiword / empty rows go
        for c in out:
            values = [raw[c][i][j] for j in keep]
            if c == "head":
                values = [_int_head(h, f"sentence {i + 1}") for h in values]
            elif c == "upos" and names:
                values = [names[v] for v in values]
            out[c].append(values)
    return out


def _class_names(feature) -> list[str] | None:
    """upos is a list of ClassLabel ids on the Hub: their names, so both sources give tag strings."""
    inner = getattr(feature, "feature", None)
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


def _int_head(value, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: head {value!r} is not a word index; expected 0 (root) or a word "
                        "number") from None




# ---- tokenization shared by both tasks ----
def align_words(tokenizer, sentences: list[list[str]], max_length: int) -> list[dict]:
    """Tokenize word lists (`is_split_into_words`, truncated to `max_length`) and find each word's first
    sub-token.

    Per sentence: {"input_ids", "attention_mask", ["token_type_ids"], "starts": the first sub-token
    position of each word that fits, "end": the position after the last fitting sub-token}. `starts` is
    shorter than the sentence when truncation cut its last words: the tasks then leave those words out of
    training and score them as wrong (never silently drop a sentence from an evaluation). A word the
    tokenizer turns into nothing (e.g. a zero-width space) is replaced by the unknown token, so every word
    keeps a position."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("UD tasks need a fast tokenizer (word_ids() maps sub-tokens to words)")
    flat = [w for s in sentences for w in s]
    pieces = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    cleaned, k = [], 0
    for s in sentences:
        cleaned.append([w if pieces[k + j] else tokenizer.unk_token for j, w in enumerate(s)])
        k += len(s)
    enc = tokenizer(cleaned, is_split_into_words=True, truncation=True, max_length=max_length)
    out = []
    for i in range(len(cleaned)):
        starts: dict[int, int] = {}
        end = 1   # no word fits: right after [CLS]
        for position, w in enumerate(enc.word_ids(i)):
            if w is not None:
                starts.setdefault(w, position)
                end = position + 1
        row = {k: enc[k][i] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        out.append({**row, "starts": [starts[j] for j in range(len(starts))], "end": end})
    return out


def pad(values: list, length: int, value: int) -> list:
    return list(values) + [value] * (length - len(values))


def tokenized_dataset(columns: dict[str, list], truncated: int, max_length: int) -> datasets.Dataset:
    """The tokenized sentences as a Dataset, after saying how many lost words to truncation."""
    if truncated:
        log.warning("%d of %d sentences are longer than max_seq_length %d sub-tokens: their last words are "
                    "not trained on and count as wrong in evaluation", truncated, len(columns["index"]),
                    max_length)
    return datasets.Dataset.from_dict(columns)
