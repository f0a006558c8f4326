"""UD treebanks of the demo world (CoNLL-U), for the `dp` and `pos` tasks: `write(folder)`.

Sentences are the grammar's events (`language.py`), rendered word by word with a UPOS tag, a head and a
relation derived from the grammar: the verb is the root; the agent its `nsubj`, the thing its `obj` (with
`det` "the" and `amod` adjective), the place an `obl`, the day and hour `obl:tmod` (a subtype, so subtype
stripping has something to strip), each marker word a `case` of its noun, the full stop `punct`, English
"does" `aux` and "not" `advmod`. Two events joined by "and"/"but" are `conj` + `cc`.
Every file also has the two kinds of lines readers must drop:
- multiword tokens: English "doesn't" = does + n't; `sw` writes negation glued to the verb (its grammar), so
  every negated `sw` verb is a multiword token; `yo` glues it in some sentences.
- empty nodes: gapping ("Amani buys the goat and Tunde the cow"): the elided verb is an empty node (8.1)
  in the enhanced graph (DEPS); in the basic tree the subject stands in for it (`conj`) and the other
  remnants attach to it as `orphan`, as the UD guidelines prescribe.
Layout: ud/<treebank>-ud-<split>.conllu with treebanks en_demo (train, dev), sw_demo and yo_demo (test);
`ud_sources` finds a code's treebank by the UD naming rule `<code>_<name>`. Pure Python, deterministic.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from tlr_ray.demo.language import GRAMMARS, PLACES, VERBS, VERSION, Event, lexicon, random_event

SPLITS = {"en_demo": {"train": 1000, "dev": 150}, "sw_demo": {"test": 150}, "yo_demo": {"test": 150}}
COMPOUND, GAPPING, NEGATED = 0.15, 0.3, 0.2          # sentence mix, as in the demo text (text_line)
FUSED_NEGATION = {"en": 0.3, "sw": 1.0, "yo": 0.1}     # share of negated verbs written as one token


@dataclass(eq=False)
class Word:
    form: str
    upos: str
    deprel: str
    head: Word | None = None     # None: the sentence root (or an empty node's, which has no basic head)
    lemma: str = "_"
    empty: bool = False
    enhanced: tuple | None = None   # (head word or None, relation) in the enhanced graph, where it differs


@dataclass(eq=False)
class Fused:                     # a multiword token: one written form, several syntactic words
    form: str
    parts: list[Word] = field(default_factory=list)


def _clause(e: Event, code: str, fuse: bool) -> tuple[list, Word]:
    """(tokens in order, the verb) of one event, in the order of language.py's `_english` / `_target`."""
    en = code == "en"
    lx = {} if en else lexicon(code)
    say = (lambda concept: concept) if en else lx.__getitem__   # English words are the concept keys
    verb = Word(VERBS[e.verb] if en and not e.negated else say(e.verb), "VERB", "root", lemma=say(e.verb))
    subject = Word(e.agent, "PROPN", "nsubj", verb, e.agent)   # names are shared by every language
    thing = Word(say(e.thing), "NOUN", "obj", verb)
    adj = [Word(say(e.adj), "ADJ", "amod", thing)] if e.adj else []
    # English: "the red goat"; the targets have no article and put the adjective after the noun
    things = [Word("the", "DET", "det", thing), *adj, thing] if en else [thing, *adj]

    def oblique(marker: str, noun: str, upos: str, deprel: str, article: bool = False) -> list[Word]:
        head = Word(noun, upos, deprel, verb)
        case = Word(marker, "ADP", "case", head)
        if en:
            return [case, *([Word("the", "DET", "det", head)] if article else []), head]
        return [head, case] if GRAMMARS[code].postpositions else [case, head]

    obliques = []
    if e.place:
        obliques += oblique(PLACES[e.place] if en else lx["_loc"], say(e.place), "NOUN", "obl", article=True)
    if e.day:
        obliques += oblique("on" if en else lx["_on"], say(e.day), "PROPN", "obl:tmod")
    if e.hour:
        obliques += oblique("at" if en else lx["_hour"], str(e.hour), "NUM", "obl:tmod")
    verbs: list = [verb]
    if e.negated and en:
        aux = Word("does", "AUX", "aux", verb, "do")
        neg = Word("n't" if fuse else "not", "PART", "advmod", verb, "not")
        verbs = [Fused("doesn't", [aux, neg]), verb] if fuse else [aux, neg, verb]
    elif e.negated:
        neg = Word(lx["_not"], "PART", "advmod", verb, lx["_not"])
        verbs = [Fused(neg.form + verb.form, [neg, verb])] if fuse else [neg, verb]
    if not en and GRAMMARS[code].verb_final:
        return [subject, *things, *obliques, *verbs], verb
    return [subject, *verbs, *things, *obliques], verb


def _words(tokens: list) -> list[Word]:
    return [w for t in tokens for w in (t.parts if isinstance(t, Fused) else [t])]


def sentence(rng: random.Random, code: str, kind: str) -> list:
    """The tokens of one sentence; kind: "single", "compound", "gapping" or "fused" (negated, one token)."""
    fuse = (lambda: rng.random() < FUSED_NEGATION[code])  # noqa: E731
    if kind == "fused":
        first = random_event(rng, negated=True)
        tokens, root = _clause(first, code, fuse=True)
    else:
        first = random_event(rng, negated=kind != "gapping" and rng.random() < NEGATED)
        tokens, root = _clause(first, code, fuse())
    if kind in ("compound", "gapping"):
        joiner = rng.choice(("and", "but"))
        cc = Word(joiner if code == "en" else lexicon(code)[f"_{joiner}"], "CCONJ", "cc")
        if kind == "gapping":   # a second event with the same verb, which is left out
            second, verb2 = _clause(replace(random_event(rng), verb=first.verb), code, False)
            second = _gap(second, verb2, root, cc)
        else:
            second, verb2 = _clause(random_event(rng, negated=rng.random() < NEGATED), code, fuse())
            verb2.deprel, verb2.head, cc.head = "conj", root, verb2
        tokens = [*tokens, cc, *second]
    return [*tokens, Word(".", "PUNCT", "punct", root)]


def _gap(tokens: list, verb: Word, root: Word, cc: Word) -> list:
    """Basic tree after gapping: the subject replaces the verb (conj), the other remnants are its orphans;
    the enhanced graph keeps them on an empty node that stands for the verb."""
    subject = next(w for w in tokens if w.deprel == "nsubj")
    empty = Word(verb.form, "VERB", "_", None, verb.lemma, empty=True, enhanced=(root, "conj"))
    for w in _words(tokens):
        if w.head is verb:
            w.enhanced = (empty, w.deprel)
            w.deprel, w.head = ("conj", root) if w is subject else ("orphan", subject)
    cc.head, cc.enhanced = subject, (empty, "cc")
    out = [t for t in tokens if t is not verb]
    at = out.index(subject) + 1
    return [*out[:at], empty, *out[at:]]


def conllu_lines(tokens: list, sent_id: str) -> list[str]:
    ids: dict[int, str] = {}
    last = 0
    for w in _words(tokens):   # words 1..n; an empty node after word i is "i.1"
        if w.empty:
            ids[id(w)] = f"{last}.1"
        else:
            last += 1
            ids[id(w)] = str(last)

    def ref(w: Word | None) -> str:
        return ids[id(w)] if w is not None else "0"

    words = _words(tokens)
    enhanced = any(w.empty for w in words)   # DEPS is filled in sentences with an empty node only
    text = " ".join(t.form for t in tokens if not (isinstance(t, Word) and t.empty))
    lines = [f"# sent_id = {sent_id}", f"# text = {text}"]
    for t in tokens:
        if isinstance(t, Fused):
            lines.append(f"{ids[id(t.parts[0])]}-{ids[id(t.parts[-1])]}\t{t.form}" + "\t_" * 8)
        for w in (t.parts if isinstance(t, Fused) else [t]):
            head = "_" if w.empty else ref(w.head)
            deps = "_"
            if enhanced:
                h, rel = w.enhanced or (w.head, w.deprel)
                deps = f"{ref(h)}:{rel}"
            lines.append("\t".join([ids[id(w)], w.form, w.lemma if w.lemma != "_" else w.form, w.upos, "_",
                                    "_", head, w.deprel, deps, "_"]))
    return lines + [""]


def _kind(i: int, rng: random.Random) -> str:
    """The first two sentences of every file guarantee a multiword token and an empty node."""
    if i < 2:
        return ("fused", "gapping")[i]
    if rng.random() >= COMPOUND:
        return "single"
    return "gapping" if rng.random() < GAPPING else "compound"


def write(folder: Path) -> dict:
    """Write ud/<treebank>-ud-<split>.conllu into `folder`; returns sentences per treebank and split."""
    sizes: dict = {}
    for treebank, splits in SPLITS.items():
        code = treebank.split("_")[0]
        for split, n in splits.items():
            rng = random.Random(f"{VERSION}:ud:{treebank}:{split}")
            lines: list[str] = []
            for i in range(n):
                lines += conllu_lines(sentence(rng, code, _kind(i, rng)), f"{treebank}-{split}-{i + 1}")
            path = Path(folder) / "ud" / f"{treebank}-ud-{split}.conllu"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            sizes.setdefault(treebank, {})[split] = n
    return sizes
