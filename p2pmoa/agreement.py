"""Canonical answers and answer agreement: *same answer*, not *same topic*.

Every consensus method of the project (SMoA judge and moderator, PBFT validity, voting,
averaging's pick) needs to know whether two answers to one question *say the same thing*.
Cosine similarity of sentence embeddings measures wording and topic: on the labelled set
``tests/data/agreement_pairs.json`` (answers to one question that agree in other words vs
answers that contradict in the same words) the centred Gemma space ranks contradictions above
agreements (ROC AUC well below 0.5, docs/embeddings.md). This module compares what the answers
*state* instead:

1. :func:`canonical_answer`: the short answer inside a model's text: the ``Answer: ...`` line
   the prompt asks for, else the first sentence, without fillers ("The answer is", "I think").
2. :func:`normalise`: NFKC, case-folded, number words to digits ("eight" -> 8, "a dozen" ->
   12), articles and punctuation dropped, unit spellings unified ("degrees Celsius" -> "c").
3. :func:`agreement`: a score in [0, 1] for two answers to one ``question``:

   * yes/no answers agree iff their polarity is equal;
   * answers that state a number agree iff the main numbers are equal (relative tolerance
     ``NUMBER_RTOL``; converted to base units first when both carry a known unit, so
     "212 °F" agrees with "100 °C"); a number against no number is a disagreement;
   * other answers are compared by their *key terms* (content words that are not in the
     question): the head term of one must occur in the other (0.6), plus the overlap
     coefficient of the key-term sets (0.4). Chosen by measurement against plain overlap,
     Jaccard and embedding cosine (``python -m p2pmoa.agreement --measure``).

   :func:`equivalent` is ``agreement >= AGREE_THRESHOLD``.
4. :func:`clusters`: groups of equivalent answers (greedy leader clustering in the order
   given, deterministic), largest total weight first, so every method can ask "which answer do
   most (trust-weighted) members give?".

Pure functions: no I/O, no clock, no randomness.
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Sequence

ANSWER_CHARS_MAX = 120
"""A canonical answer is clipped to this many characters (it is signed and sent with every
proposal; a short answer is the point)."""

AGREE_THRESHOLD = 0.5
""":func:`equivalent` threshold on :func:`agreement` (chosen on the labelled set; the
scores are nearly binary, see docs/embeddings.md)."""

NUMBER_RTOL = 1e-6
"""Relative tolerance for two numbers in the same unit (or without units)."""

UNIT_RTOL = 0.05
"""Relative tolerance after converting two different units to base units (conversions stated
to two or three significant figures, and "about 8 minutes" vs "about 500 seconds", agree)."""

# ----------------------------------------------------------------------------- canonical form

_ANSWER_LINE = re.compile(r"(?im)^[\s*#>-]*(?:final\s+)?answer\s*(?:is)?\s*[:：=-]\s*(.*\S)")
_FILLERS = re.compile(
    r"^(?:(?:sure|okay|ok|well|so|yes and|great question)[,!.]?\s+)?"
    r"(?:(?:i think|i believe|i'm sure|i am sure|in my opinion|the answer is|the correct answer is|"
    r"the final answer is|my answer is|answer is|the result is|the short answer is|"
    r"(?:the )?(?:short |simple |correct )?answer to (?:this|that|the|your)(?:\s+\w+){0,2}\s+question is)"
    r"\s*[:,]?\s*)",
    re.I)
_TAG = re.compile(r"</?[a-zA-Z][\w-]*(?:\s[^<>]*)?/?>")
_SENTENCE_END = re.compile(r"(?<!\d)[.!?](?:\s|$)|\n")


def canonical_answer(text: str) -> str:
    """The short answer inside ``text`` (not yet normalised; see :func:`normalise`).

    The last non-empty ``Answer: ...`` line if there is one (models that reason first state
    the result last), else the first sentence of the first non-empty line; leading fillers
    ("The answer is", "I think") are dropped; clipped to ``ANSWER_CHARS_MAX`` characters.
    """
    if not isinstance(text, str):
        return ""
    text = unicodedata.normalize("NFKC", text).strip()
    text = _TAG.sub("", text).strip()  # "<b>A</b>": markup is not the answer
    text = re.sub(r"\b(i\.e|e\.g|etc|approx|ca|vs)\.", lambda m: m.group(1).replace(".", ""), text, flags=re.I)
    found = [m.group(1).strip() for m in _ANSWER_LINE.finditer(text) if m.group(1).strip()]
    if found:
        cand = found[-1]
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        cand = lines[0] if lines else ""
    cand = _FILLERS.sub("", cand).strip()
    m = _SENTENCE_END.search(cand)
    if m and m.start() > 0:
        cand = cand[: m.start()]
    cand = cand.strip(" \t*_`\"'")
    return cand[:ANSWER_CHARS_MAX]


_UNITS = {  # spelling -> canonical unit symbol
    "°c": "c", "ºc": "c", "celsius": "c", "centigrade": "c", "degrees celsius": "c", "degree celsius": "c",
    "°f": "f", "ºf": "f", "fahrenheit": "f", "degrees fahrenheit": "f", "degree fahrenheit": "f",
    "kelvin": "k", "kelvins": "k",
    "kilometers": "km", "kilometres": "km", "kilometer": "km", "kilometre": "km",
    "meters": "m", "metres": "m", "meter": "m", "metre": "m",
    "centimeters": "cm", "centimetres": "cm", "centimeter": "cm", "centimetre": "cm",
    "millimeters": "mm", "millimetres": "mm", "millimeter": "mm", "millimetre": "mm",
    "miles": "mi", "mile": "mi", "feet": "ft", "foot": "ft", "inches": "inch",
    "kilograms": "kg", "kilogram": "kg", "kilos": "kg", "kilo": "kg", "grams": "g", "gram": "g",
    "pounds": "lb", "pound": "lb", "lbs": "lb", "ounces": "oz", "ounce": "oz",
    "tonnes": "t", "tonne": "t",
    "liters": "l", "litres": "l", "liter": "l", "litre": "l",
    "milliliters": "ml", "millilitres": "ml", "milliliter": "ml", "millilitre": "ml",
    "seconds": "s", "second": "s", "secs": "s", "sec": "s", "minutes": "min", "minute": "min",
    "mins": "min", "hours": "h", "hour": "h", "hrs": "h", "days": "day", "weeks": "week",
    "years": "year", "yrs": "year", "percent": "%", "per cent": "%",
}
# unit -> (dimension, factor to base, offset): base = value * factor + offset
_CONVERT = {
    "c": ("temp", 1.0, 273.15), "f": ("temp", 5 / 9, 273.15 - 32 * 5 / 9), "k": ("temp", 1.0, 0.0),
    "km": ("len", 1000.0, 0), "m": ("len", 1.0, 0), "cm": ("len", 0.01, 0), "mm": ("len", 0.001, 0),
    "mi": ("len", 1609.344, 0), "ft": ("len", 0.3048, 0), "inch": ("len", 0.0254, 0),
    "kg": ("mass", 1.0, 0), "g": ("mass", 0.001, 0), "lb": ("mass", 0.45359237, 0),
    "oz": ("mass", 0.028349523, 0), "t": ("mass", 1000.0, 0),
    "l": ("vol", 1.0, 0), "ml": ("vol", 0.001, 0),
    "s": ("time", 1.0, 0), "min": ("time", 60.0, 0), "h": ("time", 3600.0, 0),
    "day": ("time", 86400.0, 0), "week": ("time", 604800.0, 0), "year": ("time", 31557600.0, 0),
}
_UNIT_RE = re.compile(r"(?<![a-z])(" + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True))
                      + r")(?![a-z])")

_SMALL = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate(
    "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if w != "_"}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_SPECIAL = {"a dozen": "12", "dozen": "12", "a pair of": "2", "a pair": "2", "pair of": "2",
            "a couple of": "2", "a couple": "2", "a score of": "20", "half": "0.5",
            "a hundred": "100", "a thousand": "1000", "none": "0", "nothing": "0",
            "first": "1", "third": "3", "fourth": "4", "fifth": "5",
            "once": "1", "twice": "2", "thrice": "3"}
_ORDINAL_SUFFIX = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b")
_NUMWORD = re.compile(r"\b(?:" + "|".join(list(_SMALL) + list(_TENS) + list(_SCALES) + ["and"])
                      + r")(?:[\s-]+(?:" + "|".join(list(_SMALL) + list(_TENS) + list(_SCALES) + ["and"])
                      + r"))*\b")


def _words_to_number(span: str) -> str | None:
    words = [w for w in re.split(r"[\s-]+", span) if w and w != "and"]
    if not words:
        return None
    total, cur = 0, 0
    for w in words:
        if w in _SMALL:
            cur += _SMALL[w]
        elif w in _TENS:
            cur += _TENS[w]
        elif w in _SCALES:
            cur = max(cur, 1) * _SCALES[w]
            if _SCALES[w] >= 1000:
                total, cur = total + cur, 0
    return str(total + cur)


def _numbers_in_words(t: str) -> str:
    def repl(m):
        s = m.group(0)
        if s.strip() == "and":
            return s
        lead = s[: len(s) - len(s.lstrip())]
        trail = s[len(s.rstrip()):]
        core = s.strip()
        core_words = core.split()
        if core_words and core_words[0] == "and":  # keep a leading "and" as a word
            return lead + "and " + (_words_to_number(" ".join(core_words[1:])) or "") + trail
        v = _words_to_number(core)
        return lead + (v if v is not None else core) + trail
    return _NUMWORD.sub(repl, t)


_ALIASES = {"co2": "carbon dioxide", "usa": "united states", "u.s.": "united states",
            "uk": "united kingdom",
            "u.k.": "united kingdom", "nyc": "new york city", "km/s": "km per s",
            "km/h": "km per h", "mph": "mi per h"}
def _plain(v: float) -> str:
    return str(int(v)) if v == int(v) and abs(v) < 1e18 else repr(v)


_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s%.°º/+\-×*=]")


def normalise(text: str) -> str:
    """Canonical comparable form: case-folded, numbers as digits, units unified, no articles
    or punctuation. ``normalise("The answer: Eight legs.") == "answer: 8 legs"`` is not
    promised; ``normalise(canonical_answer(x))`` is what methods compare."""
    if not isinstance(text, str):
        return ""
    t = unicodedata.normalize("NFKD", text)
    t = "".join(ch for ch in t if not unicodedata.combining(ch))
    t = unicodedata.normalize("NFKC", t).casefold()
    for k, v in _ALIASES.items():
        t = re.sub(rf"\b{re.escape(k)}\b", v, t)
    t = t.replace("’", "'").replace("–", "-").replace("—", " ")
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)  # 1,000 -> 1000
    t = re.sub(r"(\d+(?:\.\d+)?)\s*(?:×|x|\*)\s*10\s*\^\s*(-?\d+)",
               lambda m: _plain(float(m.group(1)) * 10.0 ** int(m.group(2))), t)  # 3 × 10^8
    for k in sorted(_SPECIAL, key=len, reverse=True):
        t = re.sub(rf"\b{re.escape(k)}\b", _SPECIAL[k], t)
    t = re.sub(r"\bno (?=[a-z])(?!(?:i|it|that|this|they|he|she|we|you|not)\b)", "0 ", t)
    t = _numbers_in_words(t)
    t = _ORDINAL_SUFFIX.sub(r"\1", t)
    t = re.sub(r"(\d)\s*(?:°|º|degrees?)\s*(c|f)\b", r"\1 °\2", t)
    t = re.sub(r"(\d)\s*(?:°|º)", r"\1 °", t)
    t = _UNIT_RE.sub(lambda m: _UNITS[m.group(1)], t)
    t = re.sub(r"\bdegrees?\b", "", t)
    bare = _ARTICLES.sub(" ", t)
    if re.search(r"\w", bare):  # "A" alone is an answer (a letter), not an article
        t = bare
    t = _PUNCT.sub(" ", t)
    t = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", t)
    return " ".join(t.split())


# ----------------------------------------------------------------------------- features

_STOP = frozenset("""
a an the is are was were be been being am it its it's this that these those there here of in on
at to for from by with as and or but if then than so such very really quite just also too about
into over under after before between during what which who whom whose when where why how do does
did done doing have has had having i you he she we they me him her us them my your his our their
mine yours i'm you're it’s can could would should will shall may might must not no yes
answer answers final question correct correctly true false sure definitely certainly probably
approximately about around roughly exactly only called named known famous one best most
because since due while although though thing things some any many much more less each every
well indeed actually basically simply generally usually typically mainly mostly
think believe say says said tell told give given call
look looks seem seems make made take takes taken use uses used get gets got go goes went come
comes came know knows knew mean means like close nearly almost s t d ll re ve
""".split())
_TOKEN = re.compile(r"[a-z0-9%°]+(?:\.[0-9]+)?")
_YES = frozenset({"yes", "yeah", "yep", "true", "correct", "right", "indeed", "affirmative"})
_NO = frozenset({"no", "nope", "false", "incorrect", "wrong", "negative"})
_NEG = re.compile(r"\b(?:not|never|cannot|no longer)\b|\b\w+n t\b|\b(?:can|won) t\b")
_NUM = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w.])|(?<![\w.])[-+]?\d+(?:\.\d+)?(?=\s*(?:%|°|[a-z]))")


def _stem(w: str) -> str:
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("es") and w[-3] in "sxz":
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def _tokens(norm: str) -> list[str]:
    return [_stem(w) for w in _TOKEN.findall(norm)]


def polarity(norm: str) -> bool | None:
    """True for a yes-answer, False for a no-answer, None if the answer is not yes/no.

    Only a *leading* yes/no word counts (``"no legs"`` is the number 0 after :func:`normalise`,
    not a no)."""
    words = norm.split()
    if not words:
        return None
    if words[0] in _YES:
        return True
    if words[0] in _NO:
        return False
    return None


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str | None
    decimals: int = 0

    def base(self) -> tuple[str | None, float]:
        conv = _CONVERT.get(self.unit or "")
        if conv is None:
            return (self.unit, self.value)
        dim, factor, offset = conv
        return (dim, self.value * factor + offset)


def main_quantity(norm: str, question_norm: str = "") -> Quantity | None:
    """The number an answer states: the last number that is not in the question ("7 × 2 = 14"
    states 14; models state results last), else the one after the last ``=``, else the first;
    with the unit right after it, if known."""
    found = [(m.group(0), m.end()) for m in _NUM.finditer(norm)]
    if not found:
        return None
    qnums = {float(x) for x in _NUM.findall(question_norm)} if question_norm else set()
    fresh = [(x, e) for x, e in found if float(x) not in qnums]
    if len(fresh) > 1:  # "one mile is 1.609 km", "60 minutes in one hour": the 1 is not the answer
        fresh = [(x, e) for x, e in fresh if float(x) != 1.0] or fresh
    pick = fresh[-1] if fresh else None
    if pick is None and "=" in norm:
        tail = norm.rsplit("=", 1)[-1]
        off = len(norm) - len(tail)
        pick = next(((m.group(0), off + m.end()) for m in _NUM.finditer(tail)), None)
    x, end = pick or found[0]
    m = re.match(r"\s*(°c|°f|%|[a-z]+)", norm[end:])
    unit = None
    if m:
        u = m.group(1).replace("°", "")
        unit = u if u in _CONVERT or u == "%" else None
    return Quantity(float(x), unit, _decimals(x))


def _decimals(x: str) -> int:
    return len(x.split(".", 1)[1]) if "." in x else 0


def _numbers_agree(a: Quantity, b: Quantity) -> bool:
    if a.unit and b.unit and a.unit != b.unit:
        (da, va), (db, vb) = a.base(), b.base()
        if da == db and da in {"temp", "len", "mass", "vol", "time"}:
            return math.isclose(va, vb, rel_tol=UNIT_RTOL, abs_tol=1e-9)
    if math.isclose(a.value, b.value, rel_tol=NUMBER_RTOL, abs_tol=1e-9):
        return True
    # stated at different precision: 373 K vs 373.15 K, 1.609 km vs 1.61 km
    d = min(a.decimals, b.decimals)
    if a.decimals != b.decimals and abs(a.value - b.value) <= 0.5 * 10 ** -d + 1e-12:
        return math.isclose(a.value, b.value, rel_tol=0.01)
    return False


def key_terms(norm: str, question_norm: str = "") -> list[str]:
    """Content words of an answer that the question does not already contain, in order."""
    q = set(_tokens(question_norm))
    out: list[str] = []
    for w in _tokens(norm):
        if w in _STOP or w in q or w in out:
            continue
        if any(len(x) >= 4 and w.startswith(x) for x in q):  # "brazilian" answers "brazil"
            continue
        out.append(w)
    return out


def _same_term(a: str, b: str) -> bool:
    if a == b:
        return True
    return len(a) >= 5 and len(b) >= 5 and SequenceMatcher(None, a, b).ratio() >= 0.85


def _term_in(t: str, terms: Sequence[str]) -> bool:
    return any(_same_term(t, u) for u in terms)


# ----------------------------------------------------------------------------- agreement


def agreement(a: str, b: str, question: str = "", *, canonical: bool = True) -> float:
    """How much two answers to ``question`` state the same thing, in [0, 1].

    Args:
        a, b: answers (full model text, or canonical answers).
        question: the question both answer; its words do not count as agreement.
        canonical: extract :func:`canonical_answer` first (True), or compare ``a`` and ``b``
            as given (when they already are canonical answers).
    """
    ca = canonical_answer(a) if canonical else (a or "")
    cb = canonical_answer(b) if canonical else (b or "")
    ca, cb = _CONTRAST.sub("", ca), _CONTRAST.sub("", cb)  # "Canberra, not Sydney": drop Sydney
    na, nb, nq = normalise(ca), normalise(cb), normalise(question or "")
    if not na or not nb:
        return 0.0
    if na == nb:
        return 1.0
    pa, pb = polarity(na), polarity(nb)
    if pa is not None and pb is not None:
        return 1.0 if pa == pb else 0.0
    if (pa is None) != (pb is None):
        # "yes" vs "The Sun is a star": the other states a claim; a negated claim says no
        claim = nb if pa is not None else na
        p = pa if pa is not None else pb
        if _is_yes_no_question(nq):
            if not set(key_terms(claim)) & set(_tokens(nq)):
                return 0.0  # the claim is not about the question at all
            return 1.0 if p == (not _NEG.search(claim)) else 0.0
    qa, qb = main_quantity(na, nq), main_quantity(nb, nq)
    ka, kb = key_terms(na, nq), key_terms(nb, nq)
    numq = _is_number_question(nq)
    if qa is not None and qb is not None and (numq or not _words(ka) or not _words(kb)):
        return 1.0 if _numbers_agree(qa, qb) else 0.0
    if (qa is None) != (qb is None) and numq:
        return 0.0
    if qa is not None and qb is not None and _differ_only_in_numbers(na, nb):
        return 0.0  # "answer 0 to X" vs "answer 1 to X": the same words, other numbers
    if not ka or not kb:
        ka, kb = key_terms(na), key_terms(nb)  # the answer repeats the question's words
        if not ka or not kb:
            return 0.0
    ha, hb = _head(ca, ka, nq), _head(cb, kb, nq)
    head = 1.0 if (_term_in(ha, kb) or _term_in(hb, ka)) else 0.0
    common = sum(1 for t in ka if _term_in(t, kb))
    overlap = common / min(len(ka), len(kb))
    neg = bool(_NEG.search(na)) != bool(_NEG.search(nb))
    score = 0.6 * head + 0.4 * overlap
    return score * (0.3 if neg else 1.0)


def _differ_only_in_numbers(na: str, nb: str) -> bool:
    """Each answer has a number the other lacks, and their other key terms are the same."""
    xa = {float(x) for x in _NUM.findall(na)}
    xb = {float(x) for x in _NUM.findall(nb)}
    if not (xa - xb and xb - xa):
        return False
    wa, wb = set(_words(key_terms(na))), set(_words(key_terms(nb)))
    return bool(wa) and wa == wb


def _words(terms: Sequence[str]) -> list[str]:
    return [t for t in terms if not re.fullmatch(r"[-+]?[\d.]+", t)]


_CAPS = re.compile(r"\b([A-Z][\w'-]*|\d+(?:[.,]\d+)?)")
_CONTRAST = re.compile(r",?\s*\b(?:not|rather than|instead of)\s+(?=[A-Z0-9])[^,;.!?]*")


def _head(canon: str, keys: Sequence[str], question_norm: str) -> str:
    """The term an answer is *about*: after "It is / That's / It was ..." its first key term,
    else its first proper noun or number that is a key term, else its first key term."""
    by = re.search(r"\bby\s+(?:the\s+)?([\w'-]+)", canon)  # "It was painted by Leonardo"
    if by:
        for t in _tokens(normalise(by.group(1))):
            if t in keys:
                return t
    if _COPULA_START.match(canon):
        return keys[0]
    for m in _CAPS.finditer(canon):
        for t in _tokens(normalise(m.group(1))):
            if t in keys:
                return t
    return keys[0]


_COPULA_START = re.compile(r"^\s*(?:it|that|this|they|these|those)(?:'s|\s+is|\s+was|\s+are|\s+were|’s)\b", re.I)


_YN_START = re.compile(r"^(?:is|are|was|were|do|does|did|can|could|will|would|has|have|had|should|must)\b")
_HOW_MANY = re.compile(r"\b(?:how (?:many|much|far|long|old|tall|high|big|heavy|fast|deep)|what year|which year|"
                       r"in what year|when did|when was|what is \d|what's \d|calculate|compute|sum|product|"
                       r"[0-9]\s*[-+*/×x÷]\s*[0-9]|number of|what percentage|how hot|temperature|square root|"
                       r"times|plus|minus|divided|multiplied|percent|boil|freez|speed|distance|weigh|cost|"
                       r"how much)")


def _is_yes_no_question(nq: str) -> bool:
    return bool(_YN_START.match(nq))


def _is_number_question(nq: str) -> bool:
    return bool(_HOW_MANY.search(nq))


def states_answer(answer: str, question: str = "", *, canonical: bool = True) -> bool:
    """Does ``answer`` state an answer to ``question`` at all, rather than echo it?

    A yes/no question needs a yes or a no; a number question a number the question does not
    already contain (or a bare number: "5" answers "What is 5 x 1?"); any other question a
    content word the question does not contain. "37 + 41", "To solve this, I'll add 25 and
    19:" and "The answer to this question depends on the context" state nothing: in a round
    they abstain (weight 0), so two echoes of the question cannot outvote one real answer.
    """
    n = normalise(canonical_answer(answer) if canonical else answer)
    if not n:
        return False
    nq = normalise(question)
    if not nq:
        return True
    if _is_yes_no_question(nq):
        return polarity(n) is not None
    if re.fullmatch(r"[a-z]", n):  # a bare letter: "A" to "What is the first letter of the alphabet?"
        return True
    if _is_number_question(nq):
        nums = _NUM.findall(n)
        qnums = {float(x) for x in _NUM.findall(nq)}
        if any(float(x) not in qnums for x in nums):
            return True
        return len(nums) == 1 and re.fullmatch(r"[-+]?\d+(?:\.\d+)?\s*[a-z%°]*", n.strip()) is not None
    return bool(key_terms(n, nq))


def answer_core(answer: str, question: str = "", *, canonical: bool = True) -> str:
    """The few words that carry an answer, for a model to rate: "Yes"/"No" for a yes/no
    question, the main number for a number question, else the answer's key terms (content
    words the question lacks, at most 4, as written); the canonical answer if none of these is
    found. "The largest ocean on Earth is the ocean of the North Atlantic" -> "North
    Atlantic"; "46 + 26 equals 72." -> "72". Rating the core measures the answer rather than
    its wording, and costs a few tokens instead of a sentence's."""
    c = canonical_answer(answer) if canonical else (answer or "").strip()
    n = normalise(c)
    if not n:
        return ""
    nq = normalise(question)
    if _is_yes_no_question(nq):
        p = polarity(n)
        return c if p is None else ("Yes" if p else "No")
    if _is_number_question(nq):
        qty = main_quantity(n, nq)
        if qty is not None:
            return _plain(qty.value)
    keys = set(key_terms(n, nq))
    if not keys:
        return c
    words = [w for w in re.findall(r"[\w'’-]+", c) if any(t in keys for t in _tokens(normalise(w)))]
    return " ".join(words[:4]) or c


def answer_weights(answers: Sequence[str], question: str = "", weights: Sequence[float] | None = None,
                   *, canonical: bool = True) -> list[float]:
    """``weights`` (default 1 each) with 0 for each answer that states nothing
    (:func:`states_answer`); unchanged if none of them states anything."""
    w = [1.0] * len(answers) if weights is None else [float(x) for x in weights]
    said = [states_answer(a, question, canonical=canonical) for a in answers]
    if not any(said):
        return w
    return [x if ok else 0.0 for x, ok in zip(w, said)]


def equivalent(a: str, b: str, question: str = "", *, canonical: bool = True,
               threshold: float = AGREE_THRESHOLD) -> bool:
    """``agreement(a, b, question) >= threshold`` (default ``AGREE_THRESHOLD``)."""
    return agreement(a, b, question, canonical=canonical) >= threshold


# ----------------------------------------------------------------------------- clusters


@dataclass(frozen=True)
class Cluster:
    """Indices of equivalent answers; ``leader`` is the first of them in input order."""

    members: tuple[int, ...]
    weight: float

    @property
    def leader(self) -> int:
        return self.members[0]


def clusters(answers: Sequence[str], question: str = "", weights: Sequence[float] | None = None,
             *, canonical: bool = True, threshold: float = AGREE_THRESHOLD) -> list[Cluster]:
    """Groups of equivalent answers, heaviest first (ties: the group whose leader comes first).

    Greedy leader clustering: each answer joins the first earlier group whose leader it is
    equivalent to, else starts a group. Deterministic for a given order, so pass answers in an
    order every node agrees on. An empty answer forms a group of its own, and so does an answer
    of weight 0 when some answer weighs more (an echo of the question or a quarantined
    proposer's answer supports nothing and must not glue two answers into one group).

    Args:
        weights: one weight >= 0 per answer (default 1 each), e.g. trust weights.
    """
    n = len(answers)
    w = [1.0] * n if weights is None else [float(x) for x in weights]
    if len(w) != n or any(not math.isfinite(x) or x < 0 for x in w):
        raise ValueError("one finite weight >= 0 per answer is needed")
    groups: list[list[int]] = []
    weighted = any(x > 0 for x in w)
    for i, a in enumerate(answers):
        if weighted and w[i] <= 0:
            groups.append([i])
            continue
        for g in groups:
            if weighted and w[g[0]] <= 0:
                continue
            if equivalent(answers[g[0]], a, question, canonical=canonical, threshold=threshold):
                g.append(i)
                break
        else:
            groups.append([i])
    out = [Cluster(tuple(g), math.fsum(w[i] for i in g)) for g in groups]
    out.sort(key=lambda c: (-c.weight, -len(c.members), c.leader))
    return out


def agreement_matrix(answers: Sequence[str], question: str = "", *, canonical: bool = True):
    """n×n matrix of :func:`agreement` (diagonal 1), as nested lists."""
    n = len(answers)
    m = [[1.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            m[i][j] = m[j][i] = agreement(answers[i], answers[j], question, canonical=canonical)
    return m


def support(answers: Sequence[str], question: str = "", weights: Sequence[float] | None = None,
            *, canonical: bool = True, threshold: float = AGREE_THRESHOLD) -> list[float]:
    """Per answer, the weight of its cluster (the answers that agree with it, itself included),
    as a fraction of the total weight: the agreement analogue of centrality."""
    cs = clusters(answers, question, weights, canonical=canonical, threshold=threshold)
    total = sum(c.weight for c in cs) or 1.0
    out = [0.0] * len(answers)
    for c in cs:
        for i in c.members:
            out[i] = c.weight / total
    return out


def rank_by_support(answers: Sequence[str], question: str = "", weights: Sequence[float] | None = None,
                    tiebreak: Sequence[float] | None = None, *, canonical: bool = True,
                    threshold: float = AGREE_THRESHOLD) -> list[int]:
    """Answer indices, those of the heaviest agreeing cluster first; within a cluster by
    ``tiebreak`` (higher first, e.g. centrality), then by index."""
    s = support(answers, question, weights, canonical=canonical, threshold=threshold)
    tb = list(tiebreak) if tiebreak is not None else [0.0] * len(answers)
    return sorted(range(len(answers)), key=lambda i: (-round(s[i], 9), -round(float(tb[i]), 9), i))


def all_agree(answers: Sequence[str], question: str = "", *, canonical: bool = True,
              threshold: float = AGREE_THRESHOLD) -> bool:
    """True iff the answers form one cluster (and there is at least one non-empty answer)."""
    if not answers:
        return False
    cs = clusters(answers, question, canonical=canonical, threshold=threshold)
    return len(cs) == 1 and bool(normalise(canonical_answer(answers[0]) if canonical else answers[0]))


def order_candidates(answers: Sequence[str], question: str = "", weights: Sequence[float] | None = None,
                     tiebreak: Sequence[float] | None = None, fair_keys: Sequence[bytes] | None = None,
                     *, threshold: float = AGREE_THRESHOLD) -> tuple[list[int], list[Cluster]]:
    """The order in which a consensus round prefers candidate answers, and its clusters.

    Clusters of equivalent answers by decreasing weight (e.g. the proposers' trust weights);
    clusters of equal weight by decreasing mean ``tiebreak`` (e.g. embedding centrality: only
    decides between answers that no agreement separates); inside a cluster, by ``fair_keys``
    (e.g. a hash of query id and proposer) so that among equivalent answers no proposer is
    favoured by where its id sorts, else by index.

    Returns:
        (order, clusters): every index once, best first; clusters in the same order.
    """
    n = len(answers)
    cs = clusters(answers, question, weights, threshold=threshold)
    tb = [0.0] * n if tiebreak is None else [float(x) for x in tiebreak]
    if len(tb) != n or (fair_keys is not None and len(fair_keys) != n):
        raise ValueError("one tiebreak value and one fair key per answer are needed")

    def mean_tb(c: Cluster) -> float:
        return sum(tb[i] for i in c.members) / len(c.members)

    cs.sort(key=lambda c: (-round(c.weight, 9), -round(mean_tb(c), 9), c.leader))
    order: list[int] = []
    for c in cs:
        inside = sorted(c.members, key=(lambda i: (fair_keys[i], i)) if fair_keys is not None else (lambda i: i))
        order.extend(inside)
    return order, cs


def winning_members(cs: Sequence[Cluster]) -> set[int]:
    """Indices of the clusters that share the largest weight (several on a tie)."""
    if not cs:
        return set()
    top = max(c.weight for c in cs)
    return {i for c in cs if math.isclose(c.weight, top, rel_tol=1e-9) for i in c.members}


def signed_canonical(claimed: str, answer: str, question: str = "") -> str:
    """The canonical answer a member uses for a proposal: the proposer's signed claim if it
    states the same answer as the text (a proposer cannot vote one answer while showing
    another), else the member's own extraction from the text."""
    own = canonical_answer(answer)
    if claimed and isinstance(claimed, str) and equivalent(claimed, own, question, canonical=False):
        return claimed[:ANSWER_CHARS_MAX]
    return own


def cluster_labels(answers: Sequence[str], question: str = "", *,
                   threshold: float = AGREE_THRESHOLD) -> list[int]:
    """Per answer, the index of its cluster's leader: feed to
    :func:`consensus.voting.cluster_normaliser` so a vote counts clusters, not strings."""
    labels = [0] * len(answers)
    for c in clusters(answers, question, threshold=threshold):
        for i in c.members:
            labels[i] = c.leader
    return labels
