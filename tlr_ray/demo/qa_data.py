"""Demo QA data: questions about short stories of demo-world events, in SQuAD / XQuAD / TyDiQA layouts.

A story is 2-9 affirmative events with distinct agents, verbs and things, so a question names one event
unambiguously: "Who buys the goat ?", "Where does Amani buy the goat ?" (also what / on which day / at
what hour). The answer is one word of that event's sentence (a name, a thing, a place, a day or an hour),
so every answer is a span with an exact character offset. English fronts the question word; each target
language keeps it in place of the answer (in-situ, as Thai or Swahili do) with invented question words.
Names and digits are shared by every language, as in the rest of the world. The longest stories need 2-3
windows of 64 tokens, so window splitting and span post-processing are exercised.
Written by `write(folder)`, which the demo world builder calls; pure Python, deterministic.
"""
from __future__ import annotations

import functools
import hashlib
import json
import random
from pathlib import Path

from tlr_ray.demo.language import GRAMMARS, NAMES, NOUNS, VERBS, VERSION, Event, fact_values, lexicon, render

SQUAD = {"train": 1000, "dev": 150}        # English questions (train-v1.1.json, dev-v1.1.json)
XQUAD = ("sw", "th")                       # 150 parallel questions each: xquad.<lang>.json
TYDIQA = {"english": "en", "swahili": "sw", "yoruba": "yo"}   # 150 each, one mixed file
PER_LANGUAGE = 150
STORY_LENGTHS = (2, 3, 3, 4, 5, 6, 8, 9)   # sentences; 8-9 make contexts longer than one 64-token window
ASKED = ("agent", "thing", "place", "day", "hour")
ENGLISH = {"agent": "Who {verbs} the {thing} ?", "thing": "What does {agent} {verb} ?",
           "place": "Where does {agent} {verb} the {thing} ?",
           "day": "On which day does {agent} {verb} the {thing} ?",
           "hour": "At what hour does {agent} {verb} the {thing} ?"}


def question_words(code: str) -> dict[str, str]:
    """Invented question words of a target language, from its syllables, unlike any word it has."""
    g, rng = GRAMMARS[code], random.Random(f"{VERSION}:qa-words:{code}")
    taken, words = set(lexicon(code).values()), {}
    for asked in ASKED:
        word = ""
        while not word or word in taken:
            word = "".join(vowel.replace("{}", onset) if "{}" in vowel else onset + vowel
                           for onset, vowel in ((rng.choice(g.onsets), rng.choice(g.vowels)) for _ in range(2)))
        taken.add(word)
        words[asked] = word
    return words


def make_story(rng: random.Random) -> list[Event]:
    n = rng.choice(STORY_LENGTHS)
    agents, verbs, things = rng.sample(NAMES, n), rng.sample(sorted(VERBS), n), rng.sample(NOUNS, n)
    stories = []
    for agent, verb, thing in zip(agents, verbs, things, strict=True):
        facts = {f: rng.choice(fact_values(f)) for f in ("adj", "place", "day", "hour") if rng.random() < 0.5}
        stories.append(Event(agent, verb, thing, **facts))
    return stories


def answer_word(event: Event, asked: str, code: str) -> str:
    value = getattr(event, asked)
    if asked in ("agent", "hour"):
        return str(value)
    return value if code == "en" else lexicon(code)[value]


def question(event: Event, asked: str, code: str) -> str:
    if code == "en":
        return ENGLISH[asked].format(agent=event.agent, verb=event.verb, verbs=VERBS[event.verb],
                                     thing=event.thing)
    cue = event.keeping((asked,) if asked in ("place", "day", "hour") else ())
    words = render(cue, code).split()
    words[words.index(answer_word(event, asked, code))] = question_words(code)[asked]
    return " ".join(words[:-1] + ["?"])


def english_variants(event: Event, asked: str) -> list[str]:
    """Other gold answers for English evaluation sets (SQuAD dev has several per question)."""
    if asked == "place":
        return [f"the {event.place}"]
    if asked == "thing":
        return [f"{event.adj} {event.thing}" if event.adj else f"the {event.thing}"]
    return []


def paragraph(story: list[Event], asks: list[tuple[int, str, str]], code: str, variants: bool) -> dict:
    """One SQuAD paragraph: the story's context and its questions, each answer with its char offset."""
    sentences = [render(e, code) for e in story]
    context = " ".join(sentences)
    qas = []
    for i, asked, qid in asks:
        event, word = story[i], answer_word(story[i], asked, code)
        sentence_start = sum(len(s) + 1 for s in sentences[:i])
        words = sentences[i].split()
        start = sentence_start + sum(len(w) + 1 for w in words[:words.index(word)])
        texts = [word] + (english_variants(event, asked) if variants and code == "en" else [])
        answers = [{"text": t, "answer_start": context.index(t, sentence_start if t != word else start)}
                   for t in texts]
        assert context[start:start + len(word)] == word and answers[0]["answer_start"] == start
        qas.append({"answers": answers, "id": qid, "question": question(event, asked, code)})
    return {"context": context, "qas": qas}


def stories_with_questions(n: int, seed: str) -> list[tuple[list[Event], list[tuple[int, str]]]]:
    """Stories and (event, asked fact) questions about them, n questions in all."""
    rng, out, count = random.Random(seed), [], 0
    while count < n:
        story = make_story(rng)
        askable = [(i, a) for i, e in enumerate(story) for a in ASKED if getattr(e, a) is not None]
        asks = rng.sample(askable, min(rng.choice((1, 2, 3)), n - count, len(askable)))
        out.append((story, asks))
        count += len(asks)
    return out


def _id(seed: str, k: int) -> str:
    return hashlib.sha1(f"{seed}:{k}".encode()).hexdigest()[:24]    # SQuAD ids: 24 hex digits


def _tydiqa_id(name: str, seed: str, k: int) -> str:
    return f"{name}-{int(_id(seed, k)[:15], 16)}-0"


def squad_doc(items, code: str, seed: str, variants: bool, ids=None) -> dict:
    data, k = [], 0
    for s, (story, asks) in enumerate(items):
        numbered = []
        for i, asked in asks:
            numbered.append((i, asked, ids(k) if ids else _id(seed, k)))
            k += 1
        data.append({"title": f"Story_{s}", "paragraphs": [paragraph(story, numbered, code, variants)]})
    return {"data": data, "version": "1.1"}


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False) + "\n", encoding="utf-8")


def write(folder: Path) -> dict:
    """Write qa/squad, qa/xquad and qa/tydiqa under `folder`; returns their sizes (questions)."""
    qa, sizes = Path(folder) / "qa", {"squad": {}, "xquad": {}, "tydiqa": {}}
    for split, n in SQUAD.items():
        seed = f"{VERSION}:qa:squad:{split}"
        _write_json(qa / "squad" / f"{split}-v1.1.json",
                    squad_doc(stories_with_questions(n, seed), "en", seed, variants=split == "dev"))
        sizes["squad"][split] = n
    seed = f"{VERSION}:qa:xquad"
    items = stories_with_questions(PER_LANGUAGE, seed)     # parallel: one set of meanings, two renderings
    for code in XQUAD:
        _write_json(qa / "xquad" / f"xquad.{code}.json", squad_doc(items, code, seed, variants=False))
        sizes["xquad"][code] = PER_LANGUAGE
    articles = []
    for name, code in TYDIQA.items():
        seed = f"{VERSION}:qa:tydiqa:{name}"
        ids = functools.partial(_tydiqa_id, name, seed)
        doc = squad_doc(stories_with_questions(PER_LANGUAGE, seed), code, seed, variants=True, ids=ids)
        articles += doc["data"]
        sizes["tydiqa"][code] = PER_LANGUAGE
    random.Random(f"{VERSION}:qa:tydiqa").shuffle(articles)   # mixed, as in the real file
    _write_json(qa / "tydiqa" / "tydiqa-goldp-v1.1-dev.json", {"data": articles, "version": "1.1"})
    return sizes
