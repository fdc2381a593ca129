"""Text generators: the real one (llama.cpp on a GGUF file) and a deterministic stand-in.

Every call returns a :class:`Generation` that counts prompt and completion tokens and the
seconds spent inside llama.cpp, so that pipelines and benchmarks can account for cost honestly.

Instruct models (with a chat template) get the chat messages as they are. Base models (no chat
template, e.g. ``gemma3-270m``) are prompted as plain completion: the messages are rendered as
a short document that ends in ``Answer:`` and generation stops at the next ``Question:``.

``llama_cpp`` is imported lazily so that the pure parts of p2pmoa (and the simulator) never pay
for it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Protocol, Sequence

from p2pmoa.effects import ChatMessage, GenParams
from p2pmoa.models import DEFAULT_MODEL, ModelSpec, file_sha256, resolve

log = logging.getLogger(__name__)

PROMPT_CHARS_MAX = 64 * 1024
"""A prompt longer than this (characters, all messages together) is refused: no model we ship
has a context that large, and it bounds what a peer can make us tokenize."""


class LLMError(Exception):
    """Base class of generator errors."""


class EmptyPrompt(LLMError):
    pass


class PromptTooLong(LLMError):
    pass


@dataclass(frozen=True)
class Generation:
    """One LLM call's result.

    Args:
        text: the completion, stripped.
        prompt_tokens: tokens of the rendered prompt (as the model tokenized it).
        completion_tokens: tokens generated.
        llm_s: wall seconds spent inside the model call.
        model_id: ``name@sha256[:16]`` of the model that answered.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    llm_s: float
    model_id: str

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class TextGenerator(Protocol):
    model_id: str

    def generate(self, messages: Sequence[ChatMessage], params: GenParams) -> Generation: ...


def check_prompt(messages: Sequence[ChatMessage]) -> None:
    """Refuse empty and oversized prompts with a typed error (before any model work)."""
    if not messages or not any(m.content.strip() for m in messages if m.role == "user"):
        raise EmptyPrompt("the prompt is empty: give a non-empty user message")
    total = sum(len(m.content) for m in messages)
    if total > PROMPT_CHARS_MAX:
        raise PromptTooLong(f"prompt has {total} characters, limit is {PROMPT_CHARS_MAX}")


COMPLETION_EXAMPLE = ("What is the capital of Italy?", "Rome")
"""The one worked example a base model sees before the real question: it shows the format
(one short line after ``Answer:``), so the model neither rambles nor writes the next turn."""


def render_completion_prompt(messages: Sequence[ChatMessage]) -> str:
    """Render chat messages as plain text for a base model (no chat template).

    The system message becomes a preamble ending in "Answer each question in one short line.",
    then one worked example (``COMPLETION_EXAMPLE``); each user turn becomes ``Question: ...``
    and the text ends in ``Answer:`` so a base model continues with the answer.
    """
    parts: list[str] = []
    system = " ".join(m.content.strip() for m in messages if m.role == "system" and m.content.strip())
    parts.append((system + "\n" if system else "") + "Answer each question in one short line.")
    q, a = COMPLETION_EXAMPLE
    parts.append(f"Question: {q}\nAnswer: {a}")
    turns = [m for m in messages if m.role != "system"]
    for i, m in enumerate(turns):
        if m.role == "user":
            parts.append(f"Question: {m.content.strip()}")
        else:
            parts[-1] += f"\nAnswer: {m.content.strip()}"
    return "\n\n".join(parts) + "\nAnswer:"


_SCAFFOLD = re.compile(r"(?im)^\s*(?:question|answer|q|a)\s*[:：]|^\s*you are\b")


def clean_completion(text: str, role: str = "") -> str:
    """A base model's completion without what it wrote after its answer: an echoed
    ``Answer:``/``Question:`` turn, a blank line followed by anything, or its role text.

    The completion prompt ends in ``Answer:``, so the answer is the text before the first such
    line; if the model wrote nothing but scaffolding, the first scaffolded answer is kept.
    """
    text = (text or "").strip()
    first = text.split("\n\n", 1)[0]
    m = _SCAFFOLD.search(first)
    head = first[: m.start()].strip() if m else first.strip()
    if not head:
        m2 = re.search(r"(?im)^\s*answer\s*[:：]\s*(\S.*)$", text)
        head = m2.group(1).strip() if m2 else ""
    m = re.search(r"(?i)\byou are\b", head)
    if m:
        head = head[: m.start()].strip()
    if role:
        first = re.split(r"[.!?]", role.strip(), maxsplit=1)[0]
        noun = re.sub(r"(?i)^\s*you are\s+(?:an?\s+|the\s+)?", "", first).strip()
        if len(noun.split()) >= 2:
            i = head.lower().find(noun.lower())
            if i >= 0:
                head = head[:i].strip()
    return head


_QUIET = False


def quiet_llama_logs() -> None:
    """Route llama.cpp's own log lines (printed even with verbose=False) to Python logging at DEBUG."""
    global _QUIET
    if _QUIET:
        return
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback
    def _cb(level, text, user_data):  # pragma: no cover - called from C
        log.debug("llama.cpp: %s", text.decode("utf-8", errors="replace").rstrip())

    quiet_llama_logs._cb = _cb  # keep a reference: C holds only a pointer
    llama_cpp.llama_log_set(_cb, ctypes.c_void_p(0))
    _QUIET = True


BASE_MODEL_STOP = ["\nQuestion:", "\nAnswer:", "\n\n", "<end_of_turn>", "<eos>"]
"""Stop sequences of a base model: the next turn it would invent, or a blank line (the answer is
one short line; what follows a blank line was, measured, role text or a new document)."""


class LlamaGenerator:
    """A GGUF model run by llama.cpp (llama-cpp-python), on the CPU.

    Not thread-safe by itself: calls are serialised with a lock (the daemon additionally runs
    them through one trio CapacityLimiter, so one model call runs at a time per process).

    Args:
        path: the GGUF file.
        spec: how to prompt it (chat template or plain completion) and its context size.
        n_threads: CPU threads for llama.cpp; default: all cores.
    """

    def __init__(self, path, spec: ModelSpec, *, n_threads: int | None = None):
        import llama_cpp  # lazy: heavy, and only the real backend needs it

        quiet_llama_logs()
        self.path = path
        self.spec = spec
        self.model_id = f"{spec.name}@{file_sha256(path)[:16]}"
        self._lock = threading.Lock()
        self._priors: dict[str, float | None] = {}  # answer -> its prior (see rate_answers)
        t0 = time.perf_counter()
        # the prompt (batch) threads too: llama-cpp-python's n_threads_batch defaults to every
        # core, and on a busy machine its spinning OpenMP threads made a 1-thread model's prompt
        # evaluation 100x slower (0.05 s -> 6.5 s per decode beside one other model process)
        threads = n_threads or os.cpu_count() or 1
        self._llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=spec.n_ctx, n_threads=threads, n_threads_batch=threads,
            verbose=False, seed=0,
        )
        log.info("loaded %s from %s in %.2fs", self.model_id, path, time.perf_counter() - t0)

    @classmethod
    def from_name(cls, name_or_path: str = DEFAULT_MODEL, **kw) -> "LlamaGenerator":
        path, spec = resolve(name_or_path)
        return cls(path, spec, **kw)

    @property
    def chat(self) -> bool:
        return self.spec.chat

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False))

    def rate(self, question: str, answers: Sequence[str]) -> RatingResult:
        """This model's rating of each answer to ``question`` (see :func:`rate_answers`)."""
        with self._lock:
            return rate_answers(self._llm, question, list(answers), prior_cache=self._priors)

    def generate(self, messages: Sequence[ChatMessage], params: GenParams) -> Generation:
        check_prompt(messages)
        with self._lock:
            t0 = time.perf_counter()
            if self.spec.chat:
                out = self._llm.create_chat_completion(
                    messages=[{"role": m.role, "content": m.content} for m in messages],
                    max_tokens=params.max_tokens, temperature=params.temperature,
                    top_p=params.top_p, seed=params.seed,
                )
                text = out["choices"][0]["message"]["content"] or ""
            else:
                out = self._llm.create_completion(
                    prompt=render_completion_prompt(messages), max_tokens=params.max_tokens,
                    temperature=params.temperature, top_p=params.top_p, seed=params.seed,
                    stop=BASE_MODEL_STOP,
                )
                text = clean_completion(out["choices"][0]["text"] or "",
                                        next((m.content for m in messages if m.role == "system"), ""))
            llm_s = time.perf_counter() - t0
        usage = out.get("usage") or {}
        return Generation(text=text.strip(), prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)),
                          llm_s=llm_s, model_id=self.model_id)


RATE_TOKENS_MAX = 24
"""Tokens of an answer that are rated (a canonical answer is one short line)."""


def rating_prompt(question: str) -> str:
    """The text every model rates an answer after: the completion prompt of the bare question
    (one worked example, then ``Question: ...`` and ``Answer:``), the same for chat and base
    models so that ratings measure the answer, not the template. ``rating_prompt("")`` is the
    same template with no question: what the model expects of *any* answer (the prior)."""
    return render_completion_prompt((ChatMessage("user", question),))


RATE_PRIOR_WEIGHT = 1.0
"""How much of an answer's prior (its log-probability after the template with no question) a
rating subtracts: 1 rates by pointwise mutual information with the question. Chosen by
measurement on 315 graded questions (docs/embeddings.md): raw likelihood prefers what a model
says to anything ("Red", "London", a number copied from the question); subtracting the prior
asks what *this question* makes likelier."""


class RatingResult(list):
    """Per answer, its rating (None if empty): the mean log-probability per token after the
    question minus ``prior_weight`` x the same after the question-less template; ``tokens``
    evaluated."""

    tokens: int = 0


def _mean_logprobs(llm, prompt: str, answers: Sequence[str]) -> tuple[dict[str, float | None], int]:
    """Mean log-probability per token of ``" " + answer`` and the end of its line after
    ``prompt``, per distinct answer, and the tokens evaluated. The prompt is evaluated once;
    each answer is then decoded in one batch from it, with the logits of every position (no
    ``logits_all`` buffer for the whole context)."""
    import numpy as np

    prefix = llm.tokenize(prompt.encode("utf-8"), add_bos=True)
    n_vocab = llm.n_vocab()
    newline = llm.tokenize(b"\n", add_bos=False)[-1:]

    def log_softmax(rows: np.ndarray) -> np.ndarray:
        rows = rows.astype(np.float64)
        m = rows.max(axis=-1, keepdims=True)
        return rows - m - np.log(np.exp(rows - m).sum(axis=-1, keepdims=True))

    llm.reset()
    llm.eval(prefix)
    tokens = len(prefix)
    first = log_softmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)))
    out: dict[str, float | None] = {}
    for a in answers:
        if a in out:
            continue
        out[a] = None
        toks = llm.tokenize((" " + a).encode("utf-8"), add_bos=False)[:RATE_TOKENS_MAX] if a else []
        if toks:
            toks += newline
            total = float(first[toks[0]])
            if len(toks) > 1:  # the logits after each answer token but the last
                llm._ctx.kv_cache_seq_rm(-1, len(prefix), -1)
                llm._batch.set_batch(batch=toks[:-1], n_past=len(prefix), logits_all=True)
                llm._ctx.decode(llm._batch)
                rows = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(toks) - 1, n_vocab))
                lp = log_softmax(rows)
                total += float(sum(lp[i, t] for i, t in enumerate(toks[1:])))
                tokens += len(toks) - 1
            out[a] = total / len(toks)
    return out, tokens


PRIOR_CACHE_MAX = 4096
"""Answers whose prior a generator keeps (it depends on the answer and the model only)."""


def rate_answers(llm, question: str, answers: Sequence[str], *,
                 prior_weight: float = RATE_PRIOR_WEIGHT,
                 prior_cache: dict[str, float | None] | None = None) -> RatingResult:
    """How much more likely the llama.cpp model ``llm`` finds each answer after ``question``
    than after no question (:data:`RATE_PRIOR_WEIGHT`): the mean log-probability per token of
    ``" " + answer`` and the end of its line after :func:`rating_prompt` of the question, minus
    ``prior_weight`` x the same after ``rating_prompt("")``. Each prompt is evaluated once and
    the distinct answers decoded in one batch from it; priors found in ``prior_cache`` (kept by
    the caller for this model) are not computed again, and new ones are added to it. Not
    thread-safe: hold the model's lock."""
    clean = [(a or "").strip() for a in answers]
    distinct = list(dict.fromkeys(clean))
    priors = {} if prior_cache is None else prior_cache
    try:
        cond, tokens = _mean_logprobs(llm, rating_prompt(question), distinct)
        todo = [a for a in distinct if a not in priors] if prior_weight else []
        if todo:
            got, more = _mean_logprobs(llm, rating_prompt(""), todo)
            tokens += more
            if len(priors) + len(got) > PRIOR_CACHE_MAX:
                priors.clear()
            priors.update(got)
    finally:
        llm.reset()  # the next generation re-evaluates its prompt from a clean cache
    out = RatingResult()
    for a in clean:
        c = cond.get(a)
        if c is not None and prior_weight:
            c -= prior_weight * (priors.get(a) or 0.0)
        out.append(c)
    out.tokens = tokens
    return out


class StandInGenerator:
    """A deterministic stand-in for an LLM, for pipeline-logic tests and the simulator.

    It is NOT a language model. It answers ``"<name> answer <v> to: <question>"`` where ``v``
    is one of ``variants`` picked by a hash of (name, prompt, seed), so equal inputs give equal
    outputs, different roles or seeds can disagree, and token counts (whitespace words) and
    ``llm_s`` (a fixed ``seconds_per_token`` times tokens, default 0) are well defined.

    Args:
        name: shows up in ``model_id`` as ``stand-in:<name>``.
        variants: how many distinct answers it can give to one question.
        reply: optional function ``(messages, params) -> str`` that overrides the text.
    """

    def __init__(self, name: str = "echo", *, variants: int = 3, seconds_per_token: float = 0.0,
                 reply=None):
        self.model_id = f"stand-in:{name}"
        self.variants = variants
        self.seconds_per_token = seconds_per_token
        self._reply = reply
        self.calls = 0

    def generate(self, messages: Sequence[ChatMessage], params: GenParams) -> Generation:
        check_prompt(messages)
        self.calls += 1
        question = next((m.content for m in reversed(messages) if m.role == "user"), "")
        if self._reply is not None:
            text = self._reply(messages, params)
        else:
            h = hashlib.sha256(repr((self.model_id, [(m.role, m.content) for m in messages],
                                     params.seed)).encode()).digest()
            text = f"{self.model_id} answer {h[0] % self.variants} to: {question[:200]}"
            text = " ".join(text.split()[: max(1, params.max_tokens)])
        prompt_tokens = sum(len(m.content.split()) for m in messages)
        completion_tokens = len(text.split())
        return Generation(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          llm_s=self.seconds_per_token * (prompt_tokens + completion_tokens),
                          model_id=self.model_id)
