"""The demo world's grammar: one small set of meanings (events), rendered in English and 3 pseudo-languages.

An `Event` is a meaning: who does what to which thing, plus up to four optional facts about it (what the
thing is like, where, on which day, at which hour) and a polarity. `render(event, code)` turns it into a
sentence of one language. The target "languages" `sw`, `yo` and `th` are *not* Swahili, Yoruba or Thai: each
is a deterministic pseudo-language with its own invented lexicon (words built from its own syllable
inventory; `th` uses Thai script) and its own word order. Names, digits and the full stop are shared by all
four, so a multilingual model has a few anchors for transfer, but not many. Pure Python, no heavy imports.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace

VERSION = "demo-v1"   # part of every seed: changing the world means a new cache folder

# ---- the meanings (English glosses are the concept keys) ----
NAMES = ("Amani", "Tunde", "Lina", "Kofi", "Maya", "Omar", "Sita", "Juma", "Ada", "Niko", "Rosa", "Bayo",
         "Zuri", "Emeka", "Nia", "Pedro", "Asha", "Chidi", "Lea", "Malik", "Imani", "Femi", "Noor", "Kai")
VERBS = {  # base form -> third person singular
    "see": "sees", "buy": "buys", "sell": "sells", "carry": "carries", "find": "finds", "clean": "cleans",
    "draw": "draws", "want": "wants", "hold": "holds", "bring": "brings", "fix": "fixes", "paint": "paints",
    "hide": "hides", "lose": "loses", "count": "counts", "wash": "washes", "keep": "keeps", "take": "takes",
    "move": "moves", "show": "shows", "open": "opens", "close": "closes", "fill": "fills", "lift": "lifts",
    "push": "pushes", "pull": "pulls", "borrow": "borrows", "return": "returns", "cover": "covers",
    "touch": "touches", "weigh": "weighs", "guard": "guards", "mend": "mends", "pack": "packs",
    "drop": "drops", "catch": "catches"}
NOUNS = ("goat", "house", "basket", "book", "boat", "drum", "cup", "chair", "bicycle", "lamp", "mango", "hat",
         "box", "radio", "table", "bag", "knife", "shoe", "letter", "key", "bottle", "cow", "chicken", "net",
         "rope", "pot", "coat", "ball", "mat", "kite", "door", "window", "bucket", "spoon", "plate", "bench",
         "ladder", "hammer", "broom", "blanket", "pillow", "mirror", "clock", "phone", "camera", "map",
         "flag", "tent", "wheel", "cart", "sheep", "donkey", "horse", "dog", "cat", "duck", "fish", "melon",
         "onion", "banana", "coconut", "pepper", "bean", "stone", "shell", "feather", "ring", "necklace",
         "guitar", "flute", "pencil", "candle", "umbrella", "jacket", "scarf", "sack", "jar", "kettle")
ADJECTIVES = ("red", "blue", "green", "white", "black", "yellow", "brown", "orange", "purple", "grey", "big",
              "small", "old", "new", "heavy", "light", "long", "short", "fresh", "dirty", "wet", "dry",
              "broken", "round", "square", "soft", "hard", "cheap", "costly", "shiny")
PLACES = {  # place -> its English preposition
    "market": "in", "river": "at", "school": "at", "farm": "on", "station": "at", "garden": "in",
    "harbour": "at", "village": "in", "forest": "in", "hospital": "at", "beach": "on", "kitchen": "in",
    "library": "in", "bakery": "at", "bridge": "on", "hill": "on", "lake": "at", "field": "in",
    "office": "in", "church": "at", "mosque": "at", "stadium": "at", "island": "on", "valley": "in"}
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
HOURS = tuple(range(1, 13))    # written as digits in every language: shared tokens
FACTS = ("adj", "place", "day", "hour")   # the optional facts an event may state
FUNCTION_WORDS = ("not", "loc", "on", "hour", "and", "but")   # each target language invents its own


@dataclass(frozen=True)
class Event:
    agent: str
    verb: str
    thing: str
    adj: str | None = None
    place: str | None = None
    day: str | None = None
    hour: int | None = None
    negated: bool = False

    def stated(self) -> tuple[str, ...]:
        return tuple(f for f in FACTS if getattr(self, f) is not None)

    def keeping(self, facts: tuple[str, ...]) -> Event:
        """The same event stating only `facts` (a subset of what it states)."""
        return replace(self, **{f: None for f in FACTS if f not in facts})


def fact_values(fact: str) -> tuple:
    return {"adj": ADJECTIVES, "place": tuple(PLACES), "day": DAYS, "hour": HOURS}[fact]


def random_event(rng: random.Random, facts: tuple[str, ...] | None = None, negated: bool = False) -> Event:
    """An event stating the given optional facts (default: each with probability 1/2)."""
    if facts is None:
        facts = tuple(f for f in FACTS if rng.random() < 0.5)
    values = {f: rng.choice(fact_values(f)) for f in facts}
    return Event(rng.choice(NAMES), rng.choice(sorted(VERBS)), rng.choice(NOUNS), negated=negated, **values)


# ---- the pseudo-languages ----
@dataclass(frozen=True)
class Grammar:
    onsets: tuple[str, ...]
    vowels: tuple[str, ...]   # "{}" marks where the onset goes (Thai vowel signs may precede the consonant)
    verb_final: bool          # S O PLACE TIME V instead of S V O PLACE TIME
    postpositions: bool       # "market LOC", "Monday ON", "5 HOUR" instead of "LOC market", ...
    negation_prefix: bool     # negation glued to the verb as a prefix instead of a separate word before it


GRAMMARS = {  # every target puts the adjective after the noun and drops the article
    "sw": Grammar(("k", "m", "t", "n", "w", "j", "ch", "sh", "b", "z", "h", "l", "p", "ny", "nd"),
                  ("a", "e", "i", "o", "u"), verb_final=False, postpositions=False, negation_prefix=True),
    "yo": Grammar(("b", "d", "f", "g", "gb", "j", "k", "l", "m", "n", "r", "s", "ṣ", "t", "w", "y"),
                  ("a", "à", "á", "e", "è", "é", "ẹ", "i", "ì", "í", "o", "ò", "ó", "ọ", "u", "ù", "ú"),
                  verb_final=False, postpositions=False, negation_prefix=False),
    "th": Grammar(("ก", "ข", "ค", "ง", "จ", "ช", "ด", "ต", "ท", "น", "บ", "ป", "พ", "ม", "ย", "ร", "ล", "ว",
                   "ส", "ห"),
                  ("{}า", "{}ี", "{}ู", "{}ิ", "เ{}", "โ{}", "แ{}", "{}อ", "{}าน", "{}ง", "{}ม"),
                  verb_final=True, postpositions=True, negation_prefix=False),
}
TARGETS = tuple(GRAMMARS)          # ("sw", "yo", "th")
LANGUAGES = ("en", *TARGETS)


def _syllable(rng: random.Random, g: Grammar) -> str:
    onset, vowel = rng.choice(g.onsets), rng.choice(g.vowels)
    return vowel.replace("{}", onset) if "{}" in vowel else onset + vowel


def make_lexicon(code: str) -> dict[str, str]:
    """Concept -> pseudo-word, deterministic per language. Function words (keys "_not", ...) are short."""
    g, rng = GRAMMARS[code], random.Random(f"{VERSION}:lexicon:{code}")
    concepts = [f"_{w}" for w in FUNCTION_WORDS] + sorted(VERBS) + list(NOUNS + ADJECTIVES) + list(PLACES)
    concepts += list(DAYS)
    taken: set[str] = set()
    lexicon: dict[str, str] = {}
    for concept in concepts:
        n_syllables = 1 if concept.startswith("_") else rng.choice((2, 2, 3))
        word = ""
        while not word or word in taken:
            word = "".join(_syllable(rng, g) for _ in range(n_syllables))
        taken.add(word)
        lexicon[concept] = word
    return lexicon


_LEXICONS: dict[str, dict[str, str]] = {}


def lexicon(code: str) -> dict[str, str]:
    if code not in _LEXICONS:
        _LEXICONS[code] = make_lexicon(code)
    return _LEXICONS[code]


def render(event: Event, code: str) -> str:
    """One sentence in language `code`: words separated by spaces, ending in " ."."""
    return " ".join(_english(event) if code == "en" else _target(event, code)) + " ."


def _english(e: Event) -> list[str]:
    verb = ["does", "not", e.verb] if e.negated else [VERBS[e.verb]]
    thing = ["the", *([e.adj] if e.adj else []), e.thing]
    place = [PLACES[e.place], "the", e.place] if e.place else []
    day = ["on", e.day] if e.day else []
    hour = ["at", str(e.hour)] if e.hour else []
    return [e.agent, *verb, *thing, *place, *day, *hour]


def _target(e: Event, code: str) -> list[str]:
    g, lx = GRAMMARS[code], lexicon(code)

    def marked(marker: str, word: str) -> list[str]:
        return [word, lx[marker]] if g.postpositions else [lx[marker], word]

    thing = [lx[e.thing], *([lx[e.adj]] if e.adj else [])]
    place = marked("_loc", lx[e.place]) if e.place else []
    day = marked("_on", lx[e.day]) if e.day else []
    hour = marked("_hour", str(e.hour)) if e.hour else []
    if not e.negated:
        verb = [lx[e.verb]]
    else:
        verb = [lx["_not"] + lx[e.verb]] if g.negation_prefix else [lx["_not"], lx[e.verb]]
    if g.verb_final:
        return [e.agent, *thing, *place, *day, *hour, *verb]
    return [e.agent, *verb, *thing, *place, *day, *hour]


def text_line(rng: random.Random, code: str) -> str:
    """One line of unlabelled text: one event, sometimes two joined by "and" / "but"."""
    first = render(random_event(rng, negated=rng.random() < 0.2), code)
    if rng.random() >= 0.15:
        return first
    second = render(random_event(rng, negated=rng.random() < 0.2), code)
    joiner = rng.choice(("and", "but"))
    word = joiner if code == "en" else lexicon(code)[f"_{joiner}"]
    return f"{first[:-2]} {word} {second}"
