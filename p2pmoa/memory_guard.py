"""The near-duplicate rule of collaborative memory: when may a query be answered from memory?

``near_duplicate(q, cos, q', threshold)`` = cosine at least ``threshold`` AND
:func:`same_question`, a guard on the content that tells a question from a look-alike.
Mean-pooled embeddings of the packaged models measure wording, not meaning: on the shipped
workload look-alikes ("capital of France" / "capital of Germany") have a HIGHER median cosine
(0.95) than paraphrases (0.71), so the cosine only screens out unrelated text and the guard
decides. Measured in docs/memory.md (in-sample workload and held-out pairs). Pure functions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import snowballstemmer

_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\d+(?:[.,]\d+)*")
_STOP = frozenset("""
a an the is are was were be been being am do does did doing done of in on at by for with
from into onto about as to what which who whom whose how why when where whats what's please
tell me i you we us my your our it its this that these those there here and or but so if
can could would should will shall may might must give explain describe say know let
some any much very really just also exactly kind type one ones thing things way called
name named use used using get gets got have has had there's it's i'm
number many much amount total common called known call people our
""".split())
"""Function words and question scaffolding: paraphrases add and drop these freely.
Negations, comparatives, ordinals and prepositions of direction are NOT here on purpose:
they change what is asked ("largest" vs "smallest", "not", "first" vs "second")."""
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS.update({"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60",
                      "seventy": "70", "eighty": "80", "ninety": "90", "hundred": "100",
                      "thousand": "1000", "million": "1000000", "billion": "1000000000",
                      "dozen": "12", "half": "0.5"})
_NUMBER_WORDS.pop("one")  # "one" is mostly a pronoun ("which one"); digits still count


_STEMMER = snowballstemmer.stemmer("english")


def _suffix_stem(w: str) -> str:
    """Snowball (Porter 2) English stem: "freeze"/"freezing", "invent"/"inventing" meet."""
    return _STEMMER.stemWord(w)


_SYNONYMS: dict[str, str] = {}
for _group in (
    # generic question phrasing only: words that paraphrases swap for each other. Content that
    # tells questions apart (names, numbers, antonyms, nouns of the thing asked) is not here.
    "largest biggest big large greatest", "tallest highest", "smallest tiniest", "closest nearest",
    "fastest quickest", "wrote written writer author authored", "composed composer",
    "painted painter", "invented inventor", "discovered discoverer", "developed", "created creator",
    "speak spoke spoken", "located location situated", "world earth planet globe",
    "main primary mainly mostly chiefly principal", "produce make", "absorb take",
    "stand short abbreviation", "commonly usually", "biggest", "begin start",
    "end finish", "buy purchase bought purchased", "car automobile", "cook",
    "measure measured", "separate lie between", "go orbit around",
):
    _words = _group.split()
    for _w in _words:  # the word and its stem both map to the group's first word, stemmed
        _SYNONYMS.setdefault(_w, _suffix_stem(_words[0]))
        _SYNONYMS.setdefault(_suffix_stem(_w), _suffix_stem(_words[0]))
_ABBREVIATIONS = {"us": "united states", "usa": "united states", "uk": "united kingdom"}
_ROMAN = {"i": "1", "ii": "2", "iii": "3", "iv": "4", "v": "5", "vi": "6", "vii": "7",
          "viii": "8", "ix": "9", "x": "10"}
_QWORDS = frozenset({"which", "what", "whose"})


def _stem(w: str) -> str:
    """Stem so "boil"/"boiling", "leg"/"legs", "France's"/"France" meet, then the phrasing
    synonyms above ("inventing" -> "invent" -> "invented"'s group)."""
    w = w.lower()
    if w.endswith("'s"):
        w = w[:-2]
    if w in _SYNONYMS:
        return _SYNONYMS[w]
    w = _suffix_stem(w)
    return _SYNONYMS.get(w, w)


@dataclass(frozen=True)
class QuestionKeys:
    """The content that distinguishes one question from a look-alike.

    Args:
        numbers: numbers in order (digits; number words and Roman numerals after a name
            mapped to digits: "World War II" -> "2").
        content: stemmed content words (not in the stop list, phrasing synonyms merged), as
            a set.
        names: capitalised words not at the start of the text, lower-cased, in order
            (names of places, people, units: "Celsius to Fahrenheit").
        kinds: the word right after "which"/"what": the kind of answer asked for ("Which
            city ...?"); a paraphrase may add or drop it.
    """

    numbers: tuple[str, ...]
    content: frozenset[str]
    names: tuple[str, ...]
    kinds: frozenset[str] = frozenset()


_HEDGES = frozenset(_stem(w) for w in """
credited considered regarded believed thought generally usually typically actually exactly
approximately roughly about really normally commonly often
""".split())
"""Words a paraphrase may add on one side without changing what is asked."""


def question_keys(text: str) -> QuestionKeys:
    toks = _TOKEN.findall(text)
    expanded: list[str] = []
    for t in toks:
        ab = _ABBREVIATIONS.get(t.lower()) if t.isupper() and len(t) > 1 else None
        expanded.extend(w.title() for w in ab.split()) if ab else expanded.append(t)
    numbers, content, names, kinds = [], set(), [], set()
    prev = ""
    for i, t in enumerate(expanded):
        lw = t.lower()
        if t[0].isdigit():
            numbers.append(t.replace(",", ""))
        elif lw in _NUMBER_WORDS:
            numbers.append(_NUMBER_WORDS[lw])
        elif t.isupper() and lw in _ROMAN and i > 0 and prev[:1].isupper():
            numbers.append(_ROMAN[lw])
        elif lw not in _STOP:
            is_name = t[0].isupper() and i > 0
            w = _stem(lw) if not is_name else _SYNONYMS.get(lw.removesuffix("'s"), lw.removesuffix("'s"))
            content.add(w)
            if prev.lower() in _QWORDS:
                kinds.add(w)
            if is_name:  # names are not suffix-stemmed ("Paris", "Mars")
                names.append(w)
        prev = t
    return QuestionKeys(tuple(numbers), frozenset(content), tuple(names), frozenset(kinds))


def same_question(a: str, b: str) -> bool:
    """The content guard of the near-duplicate rule (see docs/memory.md for its measurement).

    Two questions may be the same question only if

    * they contain the same numbers (in order): "2 + 3" vs "2 + 4", "in 1990" vs "in 2000",
      "World War I" vs "World War II";
    * their names appear in the same order: "Celsius to Fahrenheit" vs "Fahrenheit to Celsius";
    * they do not each have content words the other lacks: a word swapped for another
      ("France" -> "Germany", "largest" -> "smallest", "spider" -> "ant") is a different
      question (phrasing synonyms such as "biggest"/"largest" are merged first);
    * what one side adds is only the kind of answer asked for ("*Which city* is the capital
      of France?") or a hedge ("credited with"): an added modifier ("largest *hot* desert")
      or subject ("the *smallest* planet" vs "how many planets") is a different question;
    * they share at least one content word.

    Embeddings of the packaged models measure wording, not meaning (look-alike pairs of the
    shipped workload have a HIGHER median cosine, 0.95, than its paraphrase pairs, 0.71), so
    the cosine alone cannot tell "capital of France" from "capital of Germany"; this guard can.
    """
    ka, kb = question_keys(a), question_keys(b)
    if ka.numbers != kb.numbers:
        return False
    shared_names = set(ka.names) & set(kb.names)
    if [n for n in ka.names if n in shared_names] != [n for n in kb.names if n in shared_names]:
        return False
    if not (ka.content & kb.content):
        return False
    only_a, only_b = ka.content - kb.content, kb.content - ka.content
    if only_a and only_b:
        return False
    extra, keys = (only_a, ka) if only_a else (only_b, kb)
    return all(w in keys.kinds or w in _HEDGES for w in extra)


def near_duplicate(query: str, cos: float, entry_query: str, threshold: float) -> bool:
    """Answer-from-memory rule: cosine at least ``threshold`` AND :func:`same_question`."""
    return cos >= threshold and same_question(query, entry_query)



__all__ = ["QuestionKeys", "near_duplicate", "question_keys", "same_question"]
