"""One registry of languages: each language has one canonical code, so it gets exactly one LA.

Datasets name languages their own way (MasakhaNER says `swa`, XNLI says `sw`); `canonical()` maps every
alias to one code. The table is data: add a row to support a language. Pure Python, no heavy imports.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str                      # canonical code (ISO 639-1 where one exists, else 639-3)
    name: str
    aliases: tuple[str, ...] = ()  # other codes datasets use for this language
    wiki: str | None = None        # Wikipedia code for `wikimedia/wikipedia` (None: no usable Wikipedia)


# (canonical, English name, aliases, wiki code or None). Wiki codes from DATASETS.md.
_ROWS: list[tuple[str, str, tuple[str, ...], str | None]] = [
    ("en", "English", ("eng",), "en"),
    # MasakhaNER 1.0
    ("ha", "Hausa", ("hau",), "ha"),
    ("ig", "Igbo", ("ibo",), "ig"),
    ("rw", "Kinyarwanda", ("kin",), "rw"),
    ("lg", "Luganda", ("lug",), "lg"),
    ("luo", "Luo", (), None),
    ("pcm", "Nigerian Pidgin", (), "pcm"),
    ("sw", "Swahili", ("swa", "swh"), "sw"),
    ("wo", "Wolof", ("wol",), "wo"),
    ("yo", "Yoruba", ("yor",), "yo"),
    # UD 2.7
    ("af", "Afrikaans", ("afr",), "af"),
    ("bm", "Bambara", ("bam",), "bm"),
    ("eu", "Basque", ("eus",), "eu"),
    ("kv", "Komi-Zyrian", ("kpv",), "kv"),
    ("mr", "Marathi", ("mar",), "mr"),
    ("mt", "Maltese", ("mlt",), "mt"),
    ("myv", "Erzya", (), "myv"),
    ("te", "Telugu", ("tel",), "te"),
    ("ug", "Uyghur", ("uig",), "ug"),
    # AmericasNLI
    ("ay", "Aymara", ("aym",), "ay"),
    ("bzd", "Bribri", (), None),
    ("cni", "Asháninka", (), None),
    ("gn", "Guarani", ("grn",), "gn"),
    ("hch", "Wixarika", (), None),
    ("nah", "Nahuatl", (), "nah"),
    ("oto", "Otomí", (), None),
    ("quy", "Quechua (Ayacucho)", (), "qu"),  # Wikipedia's qu is a different Quechua variety
    ("shp", "Shipibo-Konibo", (), None),
    ("tar", "Rarámuri", (), None),
    # XNLI / XQuAD / TyDiQA
    ("ar", "Arabic", ("ara",), "ar"),
    ("hi", "Hindi", ("hin",), "hi"),
    ("th", "Thai", ("tha",), "th"),
    ("ur", "Urdu", ("urd",), "ur"),
    ("zh", "Chinese", ("zho",), "zh"),
    ("bn", "Bengali", ("ben",), "bn"),
]

LANGUAGES: dict[str, Language] = {c: Language(c, n, a, w) for c, n, a, w in _ROWS}
_ALIAS: dict[str, str] = {}
for _lang in LANGUAGES.values():
    for _code in (_lang.code, *_lang.aliases):
        assert _code not in _ALIAS, f"language code {_code!r} is listed twice"
        _ALIAS[_code] = _lang.code


class UnknownLanguage(ValueError):
    pass


def canonical(code: str) -> str:
    """The canonical code for any known code or alias; raises `UnknownLanguage` with suggestions."""
    key = code.strip().lower()
    if key in _ALIAS:
        return _ALIAS[key]
    close = difflib.get_close_matches(key, list(_ALIAS), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownLanguage(f"unknown language code {code!r}.{hint} Known languages are listed in "
                          "tlr_ray/languages.py; add a row there to support a new one.")


def is_known(code: str) -> bool:
    return code.strip().lower() in _ALIAS


def name(code: str) -> str:
    return LANGUAGES[canonical(code)].name
