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

_ORDINALS = {w: str(i) for i, w in enumerate(
    "zeroth first second third fourth fifth sixth seventh eighth ninth tenth".split()) if i}
"""Ordinals are numbers ("Second World War" = "World War II"; "first" vs "second" president)."""
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_UNITS9 = "one two three four five six seven eight nine".split()
_IRREGULAR = dict(pair.split(":") for pair in """
won:win wrote:write written:write took:take taken:take gave:give given:give made:make
built:build began:begin begun:begin came:come went:go gone:go ran:run flew:fly flown:fly
grew:grow grown:grow knew:know known:know saw:see seen:see sold:sell taught:teach
thought:think held:hold led:lead lost:lose met:meet paid:pay rose:rise risen:rise sank:sink
sunk:sink swam:swim threw:throw thrown:throw told:tell wore:wear worn:wear drew:draw
drawn:draw sang:sing sung:sing fought:fight fell:fall fallen:fall froze:freeze frozen:freeze
broke:break broken:break chose:choose chosen:choose spoke:speak spoken:speak stole:steal
stolen:steal ate:eat eaten:eat drank:drink drunk:drink bought:buy brought:bring caught:catch
sent:send spent:spend kept:keep slept:sleep felt:feel heard:hear said:say sat:sit
stood:stand struck:strike shook:shake hid:hide hidden:hide became:become forgot:forget
understood:understand drove:drive driven:drive rode:ride ridden:ride shown:show
""".split())
"""Irregular past forms to their base (Snowball only strips suffixes: "won" would not meet
"win"). Base forms then go through the stemmer and the phrasing synonyms like any word."""
_PHRASES = [(re.compile(p, re.I), r) for p, r in (
    # contractions: negations are kept as a separate "not" (a negation is content)
    (r"\b(can)'t\b", r"\1 not"), (r"\bwon't\b", "will not"), (r"\b(\w+)n't\b", r"\1 not"),
    (r"\b(what|who|where|when|how|which|that|there|it|here)'s\b", r"\1 is"),
    (r"\b(\w+)'re\b", r"\1 are"), (r"\b(\w+)'ve\b", r"\1 have"), (r"\b(\w+)'ll\b", r"\1 will"),
    (r"\b(\w+)'d\b", r"\1 would"), (r"\bi'm\b", "i am"),
    # compound number words: "eighty-one" -> 81
    (r"\b(" + "|".join(_TENS) + r")[- ](" + "|".join(_UNITS9) + r")\b",
     lambda m: str(20 + 10 * _TENS.index(m.group(1).lower()) + 1 + _UNITS9.index(m.group(2).lower()))),
    # "how <adjective>" questions ask for the quantity the noun names
    (r"\bhow fast\b", "what speed"), (r"\bhow (?:tall|high)\b", "what height"),
    (r"\bhow far\b", "what distance"), (r"\bhow old\b", "what age"),
    (r"\bhow heavy\b", "what weight"), (r"\bhow deep\b", "what depth"),
    (r"\bhow much time\b", "how long"), (r"\bhow many people live in\b", "what population of"),
    # phrasal verbs to the one-word verb a paraphrase swaps them for
    (r"\b(?:came|come|comes|coming) up with\b", "developed"), (r"\btakes? in\b", "absorb"),
    (r"\bin (?:chemistry|the periodic table)\b", "chemical"),
    (r"\bmade (?:up )?(?:of|from)\b", "of"), (r"\bconsists? of\b", "of"),
    # the default scope: "the tallest mountain (in the world / on Earth)"
    (r"\b(?:in|on|of) (?:the |our )?(?:world|earth|planet|globe)\b(?!'s)", ""),
    # unit symbols and spellings: "°C", "cm", "metre"
    (r"°\s?C\b", " Celsius"), (r"°\s?F\b", " Fahrenheit"), (r"\bcm\b", "centimeters"),
    (r"\bmm\b", "millimeters"),
    (r"\bkm/h\b", "kilometers per hour"), (r"\bkm\b", "kilometers"), (r"\bkg\b", "kilograms"),
    (r"\blbs?\b", "pounds"), (r"\bft\b", "feet"), (r"\bmph\b", "miles per hour"),
    (r"\b(centi|milli|kilo)?metre(s?)\b", r"\1meter\2"), (r"\b(milli)?litre(s?)\b", r"\1liter\2"),
)]
"""Canonical question forms, applied to the text before tokens are taken: contractions,
compound number words, "how fast/tall/far/old" -> the quantity, phrasal verbs, unit symbols."""


def canonical(text: str) -> str:
    """The text with the rewrites of ``_PHRASES`` applied (case kept where it matters)."""
    text = text.replace("\u2019", "'")
    for pat, rep in _PHRASES:
        text = pat.sub(rep, text)
    return text


def _suffix_stem(w: str) -> str:
    """Snowball (Porter 2) English stem: "freeze"/"freezing", "invent"/"inventing" meet."""
    return _STEMMER.stemWord(w)


_SYNONYMS: dict[str, str] = {}
for _group in (
    # generic question phrasing only: words that paraphrases swap for each other. Content that
    # tells questions apart (names, numbers, antonyms, nouns of the thing asked) is not here.
    "largest biggest big large greatest", "tallest highest", "smallest tiniest", "closest nearest",
    "fastest quickest", "wrote written write writer author authored composed compose composer",
    "times multiply multiplied product", "plus sum add added", "substance material",
    "point temperature", "air atmosphere", "height tall", "speed fast",
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
    w = _IRREGULAR.get(w, w)
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
mean means meaning serve served equal equals person someone travel travels
located location situated book books novel series speak spoken
""".split())
"""Words a paraphrase may add or drop without changing what is asked: hedges ("credited
with"), copulas and relation verbs implied by the question ("is located", "is made of", "is
spoken", "served as", "means"), "person" and
the kind of work ("the Harry Potter books"). They are ignored on both sides before the swap check."""
_STOP_STEMS = frozenset(_stem(w) for w in _STOP)
"""Stop words are recognised in any inflection ("gives", "names")."""


def question_keys(text: str) -> QuestionKeys:
    toks = _TOKEN.findall(canonical(text))
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
        elif lw in _ORDINALS:
            numbers.append(_ORDINALS[lw])
        elif t.isupper() and lw in _ROMAN and i > 0 and prev[:1].isupper():
            numbers.append(_ROMAN[lw])
        elif lw not in _STOP and _stem(lw) not in _STOP_STEMS:
            is_name = t[0].isupper() and i > 0
            w = _stem(lw) if not is_name else _SYNONYMS.get(lw.removesuffix("'s"), lw.removesuffix("'s"))
            content.add(w)
            if prev.lower() in _QWORDS:
                kinds.add(w)
            if is_name:  # names are not suffix-stemmed ("Paris", "Mars")
                names.append(w)
        prev = t
    return QuestionKeys(tuple(numbers), frozenset(content), tuple(names), frozenset(kinds))


_AUX = frozenset("""is are was were be been am has have had do does did can could will would
shall should may might must""".split())
_DO = frozenset({"do", "does", "did"})


def asked_role(text: str) -> str | None:
    """"object" for a wh-question with do-support ("Who did Aristotle teach?", "What animals
    do wolves eat?"), "subject" when the wh-word (and for what/which one noun) is followed by a
    main verb ("Who taught Aristotle?", "What animals eat wolves?"), None otherwise (copula or
    modal questions such as "What is ...", which the content keys handle)."""
    w = [t.lower() for t in _TOKEN.findall(canonical(text))[:3]]
    if len(w) < 2 or w[0] not in ("who", "whom", "what", "which"):
        return None
    if w[1] in _DO or (w[0] in ("what", "which") and len(w) > 2 and w[2] in _DO):
        return "object"
    if w[1] in _AUX:
        return None
    if w[0] in ("who", "whom"):
        return "subject"
    return "subject" if len(w) > 2 and w[2] not in _AUX else None


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
    * they share at least one content word;
    * two wh-questions ask for the same role (:func:`asked_role`): "Who taught Aristotle?" (the subject) is not
      "Who did Aristotle teach?" (the object).

    Before the keys are taken the text is put in a canonical form (:func:`canonical`:
    contractions, compound number words, "how fast/tall/far/old" as the quantity asked,
    phrasal verbs, unit symbols and spellings); ordinals count as numbers; irregular past
    forms are mapped to their base; hedges are ignored on both sides.

    Embeddings of the packaged models measure wording, not meaning (look-alike pairs of the
    shipped workload have a HIGHER median cosine, 0.95, than its paraphrase pairs, 0.71), so
    the cosine alone cannot tell "capital of France" from "capital of Germany"; this guard can.
    """
    ka, kb = question_keys(a), question_keys(b)
    ra, rb = asked_role(a), asked_role(b)
    if ra and rb and ra != rb:
        return False  # "Who taught Aristotle?" asks the subject, "Who did Aristotle teach?" the object
    if ka.numbers != kb.numbers:
        return False
    shared_names = set(ka.names) & set(kb.names)
    if [n for n in ka.names if n in shared_names] != [n for n in kb.names if n in shared_names]:
        return False
    if not (ka.content & kb.content):
        return False
    only_a = {w for w in ka.content - kb.content if w not in _HEDGES}
    only_b = {w for w in kb.content - ka.content if w not in _HEDGES}
    if only_a and only_b:
        return False
    extra, keys = (only_a, ka) if only_a else (only_b, kb)
    return all(w in keys.kinds for w in extra)


def near_duplicate(query: str, cos: float, entry_query: str, threshold: float) -> bool:
    """Answer-from-memory rule: cosine at least ``threshold`` AND :func:`same_question`."""
    return cos >= threshold and same_question(query, entry_query)



__all__ = ["QuestionKeys", "asked_role", "canonical", "near_duplicate", "question_keys", "same_question"]
