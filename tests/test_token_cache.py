"""Tokenised datasets are cached: a second trial with the same inputs neither loads nor tokenises."""
from __future__ import annotations

from tlr_ray.tasks import DataSource, get_task
from tlr_ray.train.models import load_tokenizer
from tlr_ray.train.token_cache import subset, tokenized


class Counting:
    """The NLI task, counting how often it loads and tokenises."""

    def __init__(self):
        self.task, self.loads, self.tokenizes = get_task("nli"), 0, 0
        self.name = self.task.name

    def load(self, *a):
        self.loads += 1
        return self.task.load(*a)

    def tokenize(self, *a):
        self.tokenizes += 1
        return self.task.tokenize(*a)


def test_second_call_comes_from_the_cache(demo_world, tmp_path, monkeypatch):
    # An empty cache of its own: other tests (a sweep over the same demo data) fill the shared one.
    monkeypatch.setenv("TLR_RAY_CACHE", str(tmp_path))
    tok = load_tokenizer(str(demo_world / "model"))
    src = DataSource("demo_xnli", local_path=str(demo_world / "nli" / "xnli"), local_format="xnli-tsv")
    task = Counting()
    first = tokenized(task, {}, src, "test", "sw", tok, 48)
    again = tokenized(task, {}, src, "test", "sw", tok, 48)
    assert (task.loads, task.tokenizes) == (1, 1)
    assert first["input_ids"] == again["input_ids"] and len(first) == 240
    tokenized(task, {}, src, "test", "sw", tok, 64)  # another max length: another entry
    small = tokenized(task, {}, src, "test", "sw", tok, 48, prepare=subset(10))
    assert (task.loads, task.tokenizes) == (3, 3) and len(small) == 10
    other_language = tokenized(task, {}, src, "test", "th", tok, 48)
    assert task.loads == 4 and other_language["input_ids"] != first["input_ids"]


def test_a_tokenizer_is_not_kept_alive_by_its_fingerprint(demo_world):
    """A reused trial process loads a tokenizer per job; remembering fingerprints must not keep them all."""
    import gc
    import weakref

    from tlr_ray.train.models import load_tokenizer
    from tlr_ray.train.token_cache import tokenizer_fingerprint
    first = load_tokenizer(str(demo_world / "model"))
    fingerprint, gone = tokenizer_fingerprint(first), weakref.ref(first)
    assert tokenizer_fingerprint(load_tokenizer(str(demo_world / "model"))) == fingerprint  # same files
    del first
    gc.collect()
    assert gone() is None
