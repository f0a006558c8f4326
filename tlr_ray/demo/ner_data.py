"""NER data of the demo world, in the native file formats of CoNLL-2003 and MasakhaNER.

A sentence renders one event of `language.py` (15% of them: two joined by "and" / "but") and tags:
- PER: the agent, one or two of the personal names (shared by every language): "Amani", "Amani Kofi";
- ORG: instead of a person, an organisation name, also shared by every language: "Tembo Bank";
- LOC: the place, either the language's own word for it ("market", sw "mazepa", ...) or a town name
  shared by every language ("Kano", "Porto Novo"; English then drops its "the");
- the day: MISC in the English (CoNLL-style) files and DATE in the target (MasakhaNER-style) files, where
  the hour digit is a DATE too. The default reduced tag set maps both to O, as for the real datasets.
The target files are parallel: item i of every language is the same sentence meaning. Pure Python.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

from tlr_ray.demo.language import ADJECTIVES, NAMES, VERBS, VERSION, Event, lexicon, random_event, render

CONLL = {"train": 1500, "valid": 200, "test": 200}       # English sentences per file
MASAKHANER = {"train": 100, "dev": 50, "test": 200}      # sentences per file and language
MASAKHANER_CODES = {"swa": "sw", "yor": "yo"}            # MasakhaNER's codes -> demo languages
SENTENCES_PER_DOCUMENT = 15                              # CoNLL-2003 files mark documents with -DOCSTART-
# Names built only from letters the demo tokenizer knows as word starts (no D, G, H, U, ...), so they
# split into pieces instead of becoming [UNK]: the sub-token alignment gets exercised.
ORGS = ("Tembo Bank", "Jua Kali Traders", "Zuri Sacco", "Kilimo Corp", "Nuru Stars", "Baraka Mills",
        "Simba Cement", "Pamoja Radio", "Faraja Clinic", "Ireti Press", "Omi Water Board", "Lulu Foods")
TOWNS = ("Kano", "Mombasa", "Ibadan", "Kisumu", "Lagos", "Arusha", "Porto Novo", "Jinja", "Kigali",
         "Saint Louis", "Zaria", "Bamako", "Accra", "Cape Coast", "Kampala", "Ouagadougou")
FACT_ODDS = (("adj", 0.4), ("place", 0.7), ("day", 0.4), ("hour", 0.3))   # places often: LOC is common


@dataclass(frozen=True)
class Item:
    """One event's meaning plus how its entities are written (the same in every language)."""
    event: Event          # its agent is the subject's surface string
    subject: str          # "PER" or "ORG"
    town: str | None      # a town name replacing the place word


def _item(rng: random.Random) -> Item:
    facts = tuple(f for f, p in FACT_ODDS if rng.random() < p)
    event = random_event(rng, facts, negated=rng.random() < 0.2)
    r = rng.random()
    if r < 0.55:
        agent, kind = rng.choice(NAMES), "PER"
    elif r < 0.75:
        agent, kind = " ".join(rng.sample(NAMES, 2)), "PER"
    else:
        agent, kind = rng.choice(ORGS), "ORG"
    town = rng.choice(TOWNS) if event.place and rng.random() < 0.3 else None
    return Item(replace(event, agent=agent), kind, town)


def _sentences(n: int, seed: str) -> list[list[Item]]:
    rng = random.Random(f"{VERSION}:ner:{seed}")
    return [[_item(rng) for _ in range(2 if rng.random() < 0.15 else 1)] for _ in range(n)]


def _span(kind: str, n: int) -> list[str]:
    return [f"B-{kind}"] + [f"I-{kind}"] * (n - 1)


def _find(tokens: list[str], word: str) -> int:
    hits = [i for i, t in enumerate(tokens) if t == word]
    if len(hits) != 1:   # the generator's words are unique per sentence; if not, the tags would be wrong
        raise RuntimeError(f"demo NER: {word!r} occurs {len(hits)} times in {' '.join(tokens)}")
    return hits[0]


def tagged(item: Item, code: str, date: str | None) -> tuple[list[str], list[str]]:
    """Tokens and IOB2 tags of one event in language `code` (without the full stop); `date` is the entity
    type of the day ("MISC" / "DATE"; with "DATE" the hour too)."""
    e = item.event
    tokens = render(e, code).split()[:-1]
    tags = ["O"] * len(tokens)

    def word(concept: str) -> str:
        return concept if code == "en" else lexicon(code)[concept]
    n = len(e.agent.split())
    tags[:n] = _span(item.subject, n)                  # the agent comes first in every language
    if e.day and date:
        tags[_find(tokens, word(e.day))] = f"B-{date}"
    if e.hour and date == "DATE":
        tags[_find(tokens, str(e.hour))] = "B-DATE"
    if e.place:
        i = _find(tokens, word(e.place))
        if item.town is None:
            tags[i] = "B-LOC"
        else:
            town = item.town.split()
            start = i - 1 if code == "en" and tokens[i - 1] == "the" else i   # "in Kano", not "in the Kano"
            tokens[start:i + 1] = town
            tags[start:i + 1] = _span("LOC", len(town))
    return tokens, tags


def sentence(items: list[Item], code: str, date: str | None, rng: random.Random) -> tuple[list, list]:
    tokens, tags = tagged(items[0], code, date)
    for item in items[1:]:
        joiner = rng.choice(("and", "but"))
        more, more_tags = tagged(item, code, date)
        tokens += [joiner if code == "en" else lexicon(code)[f"_{joiner}"], *more]
        tags += ["O", *more_tags]
    return tokens + ["."], tags + ["O"]


_POS = {"the": "DT", "in": "IN", "at": "IN", "on": "IN", "does": "VBZ", "not": "RB", "and": "CC",
        "but": "CC", ".": "."}
_CHUNK = {"DT": "NP", "JJ": "NP", "NN": "NP", "NNP": "NP", "CD": "NP", "VBZ": "VP", "VB": "VP", "RB": "VP",
          "IN": "PP"}


def _pos(token: str) -> str:
    """A plausible Penn tag for the POS column (CoNLL readers ignore it, but the file has four columns)."""
    if token in _POS:
        return _POS[token]
    if token.isdigit():
        return "CD"
    if token[0].isupper():
        return "NNP"
    if token in VERBS.values():
        return "VBZ"
    return "VB" if token in VERBS else "JJ" if token in ADJECTIVES else "NN"


def _conll_lines(tokens: list[str], tags: list[str]) -> list[str]:
    lines, previous = [], "O"
    for token, tag in zip(tokens, tags, strict=True):
        pos = _pos(token)
        chunk = _CHUNK.get(pos)
        chunk_tag = "O" if chunk is None else ("I-" if previous == chunk else "B-") + chunk
        previous = chunk or "O"
        lines.append(f"{token} {pos} {chunk_tag} {tag}")
    return lines


def _write(path: Path, blocks: list[list[str]]) -> None:
    """Blocks of lines, each followed by a blank line (a sentence, or a -DOCSTART- line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\n".join(block) + "\n\n" for block in blocks), encoding="utf-8")


def write(folder: Path) -> dict:
    """Write ner/conll (CoNLL-2003 train/valid/test.txt, IOB2 as in the common distribution) and
    ner/masakhaner/data/<code>/{train,dev,test}.txt (MasakhaNER's GitHub layout) under `folder`."""
    folder = Path(folder)
    sizes: dict = {"conll": {}, "masakhaner": {}}
    for split, n in CONLL.items():
        rng = random.Random(f"{VERSION}:ner:conll-joiners:{split}")
        blocks = []
        for i, items in enumerate(_sentences(n, f"conll:{split}")):
            if i % SENTENCES_PER_DOCUMENT == 0:
                blocks.append(["-DOCSTART- -X- -X- O"])
            blocks.append(_conll_lines(*sentence(items, "en", "MISC", rng)))
        _write(folder / "ner" / "conll" / f"{split}.txt", blocks)
        sizes["conll"][split] = n
    for split, n in MASAKHANER.items():
        meanings = _sentences(n, f"masakhaner:{split}")   # parallel: the same meanings in every language
        for code, lang in MASAKHANER_CODES.items():
            rng = random.Random(f"{VERSION}:ner:masakhaner-joiners:{split}")
            blocks = [[f"{t} {tag}" for t, tag in zip(*sentence(items, lang, "DATE", rng), strict=True)]
                      for items in meanings]
            _write(folder / "ner" / "masakhaner" / "data" / code / f"{split}.txt", blocks)
        sizes["masakhaner"][split] = {code: n for code in MASAKHANER_CODES}
    return sizes
