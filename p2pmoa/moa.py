"""Mixture-of-Agents and Sparse Mixture-of-Agents, written once as a sans-I/O pipeline.

A pipeline is a Python generator: it *yields* a batch of effects (:class:`~p2pmoa.effects.Generate`
and :class:`~p2pmoa.effects.Embed`; the calls of one batch are independent, so a driver may run
them concurrently) and is *sent* the list of results in the same order
(:class:`~p2pmoa.llm.Generation` / :class:`~p2pmoa.embed.Embedding`). When it returns, its
value is the run's trace (a plain dict, JSON-serialisable). :func:`run_local` drives it on this
machine; the daemon and the simulator can drive the same generator with their own executors.

Modes:

- ``single``: one call to the aggregator model.
- ``moa`` (Wang et al. 2024): ``layers`` layers of ``n`` proposers, each a (model, role,
  temperature); from the second layer on every proposer sees the previous layer's responses
  through an aggregate-and-synthesize prompt; a final aggregator writes the answer.
- ``smoa`` (Li et al. 2024): MoA plus a **judge** that keeps the best ``k < n`` responses of
  each layer and a **moderator** that may stop after any layer. Sparse MoA saves tokens *only*
  by stopping early, and a 135M-parameter model does not follow a judge's or moderator's output
  format reliably, so both default to rules on *answer agreement* (:mod:`p2pmoa.agreement`:
  canonical answers compared for the same answer, not the same topic) that need no format:

  * judge ``agreement``: keep answers from the largest cluster of equivalent answers first,
    whole clusters in turn (clusters of equal size: the one whose first proposer comes first;
    inside a cluster: earlier proposer). Judge ``centrality`` is the older rule on
    embedding centrality (it needs an embedder; measured, it prefers near-duplicate wording
    even when wrong). Judge ``llm`` asks the model for the best k; only the numbers on its
    ``Best:`` line (or a reply that is nothing but numbers / "Response N") count, never digits
    copied from answer text; missing picks are completed by the agreement order.
  * moderator ``agreement``: stop when the kept answers are all equivalent (one cluster).
    Moderator ``llm`` asks yes/no and counts only a reply that *starts* with yes or no;
    anything else falls back to the agreement rule. Moderator ``never`` runs all layers.

- ``cascade`` (agreement-based cascading): ask the first ``cascade_first`` proposers (the
  cheap tier); if their answers are equivalent, that is the answer (exit level 1); otherwise
  ask the remaining proposers and answer with the largest cluster of equivalent answers
  (exit level 2 if at least two agree, 3 if no two answers agree: then the first answer of the
  agreement order). No aggregator call. The trace records the exit level and its cost.

Roles: proposers play roles, read from a roles file or generated once from a task description
(dataset description D and task requirement T) by :func:`generate_roles`, and cached.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Generator, Mapping, Sequence

import numpy as np

from p2pmoa import agreement
from p2pmoa import cascade as cascade_policy
from p2pmoa.effects import ChatMessage, Embed, GenParams, Generate

DEFAULT_ROLES = (
    "You are a careful domain expert. Answer accurately and concisely.",
    "You are a patient teacher. Explain the answer simply, with one short reason.",
    "You are a skeptical fact-checker. Give the answer you are most sure is correct.",
    "You are a precise scientist. State the key fact first, then one supporting detail.",
    "You are a practical engineer. Give a direct, useful answer.",
    "You are an encyclopedia editor. Write a short, neutral, factual answer.",
)

MODES = ("single", "moa", "smoa", "cascade")
JUDGES = ("agreement", "centrality", "llm")
MODERATORS = ("agreement", "llm", "never")


class MoAConfigError(ValueError):
    """A pipeline configuration that cannot run (the message says which field)."""


@dataclass(frozen=True)
class Proposer:
    """One agent of a layer.

    Args:
        model: registry name or GGUF path; None means the driver's default model.
        role: the system prompt that makes this proposer play a role.
        temperature: sampling temperature (varied across proposers for diversity).
        seed: this proposer's sampling seed (layer ``l`` uses ``seed + l``); None: the run's
            ``MoAConfig.seed`` plus the call's index. A benchmark sets it to the seed a mesh
            node samples with, so both make the very same first call.
    """

    model: str | None = None
    role: str = DEFAULT_ROLES[0]
    temperature: float = 0.7
    seed: int | None = None


@dataclass(frozen=True)
class MoAConfig:
    """A pipeline run's configuration (built once at the edge, e.g. from CLI flags).

    Args:
        mode: ``single``, ``moa`` or ``smoa``.
        layers: number of proposer layers (``l``), >= 1.
        proposers: the ``n`` proposers of every layer.
        k: responses the SMoA judge keeps per layer (1 <= k < n).
        judge: ``agreement`` (default), ``centrality`` or ``llm``.
        moderator: ``agreement`` (default), ``llm`` or ``never``.
        agreement_threshold: :func:`p2pmoa.agreement.agreement` score at which two answers
            count as the same answer (default ``agreement.AGREE_THRESHOLD``).
        aggregator_model: model of the final aggregator (None: driver default).
        max_tokens: completion budget per proposer / aggregator call (tokens).
        seed: base sampling seed; call ``i`` uses ``seed + i``.
        cascade_first: proposers in the first tier of ``cascade`` mode (>= 1).
    """

    mode: str = "smoa"
    layers: int = 2
    proposers: tuple[Proposer, ...] = field(default_factory=lambda: tuple(
        Proposer(role=r, temperature=t) for r, t in zip(DEFAULT_ROLES, (0.7, 0.8, 0.6, 0.9))))
    k: int = 2
    judge: str = "agreement"
    moderator: str = "agreement"
    agreement_threshold: float = agreement.AGREE_THRESHOLD
    aggregator_model: str | None = None
    max_tokens: int = 128
    seed: int = 0
    cascade_first: int = 2

    def __post_init__(self):
        if self.mode not in MODES:
            raise MoAConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.layers < 1:
            raise MoAConfigError(f"layers must be >= 1, got {self.layers}")
        if self.mode != "single" and not self.proposers:
            raise MoAConfigError("need at least one proposer")
        if self.mode == "smoa" and not 1 <= self.k < len(self.proposers):
            raise MoAConfigError(f"k must satisfy 1 <= k < n={len(self.proposers)}, got k={self.k}")
        if self.judge not in JUDGES:
            raise MoAConfigError(f"judge must be one of {JUDGES}, got {self.judge!r}")
        if self.moderator not in MODERATORS:
            raise MoAConfigError(f"moderator must be one of {MODERATORS}, got {self.moderator!r}")
        if self.max_tokens < 1:
            raise MoAConfigError("max_tokens must be >= 1")
        if self.mode == "cascade" and not 1 <= self.cascade_first <= len(self.proposers):
            raise MoAConfigError(f"cascade_first must satisfy 1 <= cascade_first <= n={len(self.proposers)}")


# ---------------------------------------------------------------- prompts (pure)

def aggregate_messages(query: str, responses: Sequence[str], role: str | None = None) -> tuple[ChatMessage, ...]:
    """The aggregate-and-synthesize prompt: the query plus earlier responses to build on."""
    numbered = "\n".join(f"{i}. {r.strip()}" for i, r in enumerate(responses, 1))
    system = ((role + "\n\n") if role else "") + (
        "Several assistants answered the user's question. Their answers are below; some may be "
        "wrong. Write one answer that keeps what is correct, fixes what is wrong and stays short. "
        "Do not mention the other answers.\n\nAnswers:\n" + numbered)
    return (ChatMessage("system", system), ChatMessage("user", query))


def judge_messages(query: str, responses: Sequence[str], k: int) -> tuple[ChatMessage, ...]:
    numbered = "\n".join(f"Response {i}: {r.strip()}" for i, r in enumerate(responses, 1))
    return (ChatMessage("system", "You grade answers. Reply only with the numbers of the best answers."),
            ChatMessage("user", f"Question: {query}\n\n{numbered}\n\n"
                                f"Which {k} responses are best? Reply like: Best: 1, 3"))


def moderator_messages(query: str, responses: Sequence[str]) -> tuple[ChatMessage, ...]:
    numbered = "\n".join(f"Response {i}: {r.strip()}" for i, r in enumerate(responses, 1))
    return (ChatMessage("system", "You decide whether a discussion is finished. Reply yes or no."),
            ChatMessage("user", f"Question: {query}\n\n{numbered}\n\n"
                                "Do these responses agree on a good final answer? Reply yes or no."))


# ---------------------------------------------------------------- judge / moderator rules (pure)

def centrality(vectors: np.ndarray) -> np.ndarray:
    """Mean cosine similarity of each row to the other rows (rows are L2-normalised)."""
    n = len(vectors)
    if n <= 1:
        return np.ones(n)
    sims = vectors @ vectors.T
    return (sims.sum(axis=1) - np.diag(sims)) / (n - 1)


def top_k_by_centrality(vectors: np.ndarray, k: int, exclude: Sequence[int] = ()) -> list[int]:
    """Indices of the k most central rows; ties go to the lower index (deterministic)."""
    c = centrality(vectors)
    order = sorted(range(len(c)), key=lambda i: (-round(float(c[i]), 9), i))
    return [i for i in order if i not in exclude][:k]


def mean_pairwise_cosine(vectors: np.ndarray) -> float:
    n = len(vectors)
    if n < 2:
        return 1.0
    sims = [float(vectors[i] @ vectors[j]) for i, j in itertools.combinations(range(n), 2)]
    return float(np.mean(sims))


_INT = re.compile(r"\d+")
_BEST_LINE = re.compile(r"(?im)^\W*best\s*(?:responses?|answers?)?\s*(?:are|is)?\s*[:=-]\s*(.*)$")
_NUMBERS_ONLY = re.compile(r"^[\s\[\]{}()\",:;.#&]*(?:(?:best|responses?|answers?|and|numbers?|n|r)?[\s\[\]{}()\",:;.#&]*\d{1,3}[\s\[\]{}()\",:;.#&]*)+$", re.I)
_RESPONSE_REF = re.compile(r"\b(?:response|answer)\s*#?\s*(\d{1,3})\b", re.I)


def parse_judge_output(text: str, n: int, k: int) -> list[int]:
    """The valid 0-based picks an LLM judge's free text names, in order, at most k.

    Counted: the numbers on a ``Best: ...`` line (``Best: 2, 4``); else a reply made of
    nothing but numbers and list punctuation (``[2,4]``, ``{"best": [2, 4]}``, ``2 and 4``);
    else explicit references ``Response 2`` / ``Answer #4``. Digits anywhere else (copied
    answer text such as "16 + 59 = 75") never count. Duplicates and out-of-range numbers
    are ignored. Never raises; may return fewer than k picks.
    """
    text = text or ""
    m = _BEST_LINE.search(text)
    if m:
        nums = _INT.findall(m.group(1))
    elif _NUMBERS_ONLY.match(text.strip()) and len(text) <= 80:
        nums = _INT.findall(text)
    else:
        nums = _RESPONSE_REF.findall(text)
    picks: list[int] = []
    for x in nums:
        v = int(x)
        if 1 <= v <= n and (v - 1) not in picks:
            picks.append(v - 1)
        if len(picks) == k:
            break
    return picks


_LEAD_WORD = re.compile(r"^[\W_]*(yes|no)\b", re.I)


def parse_moderator_output(text: str) -> bool | None:
    """True (stop) / False (continue) when the reply *starts* with yes / no ("Yes, they
    agree.", "**No** - ..."); None for anything else (a model that copies answers or talks
    around the question has not answered it)."""
    m = _LEAD_WORD.match(text or "")
    if not m:
        return None
    return m.group(1).lower() == "yes"


def select(vectors: np.ndarray | None, k: int, llm_text: str | None, texts: Sequence[str] | None = None,
           query: str = "", threshold: float = agreement.AGREE_THRESHOLD) -> tuple[list[int], str]:
    """The judge's decision: (kept indices, method). Always k distinct valid indices.

    The base order is the agreement order (largest cluster of equivalent ``texts`` first) when
    ``texts`` are given, else embedding centrality. With ``llm_text`` the LLM's parsed picks come
    first and the base order completes them; the method says which happened (``llm``,
    ``llm+agreement``, ``agreement-fallback``, ``agreement``, or the same with ``centrality``).
    """
    base_name = "agreement" if texts is not None else "centrality"
    n = len(texts) if texts is not None else len(vectors)
    k = min(k, n)
    if texts is not None:
        # whole clusters in turn (heaviest first; equal clusters by their first proposer), so
        # that when the largest cluster holds k answers the judge keeps k that agree, rather
        # than one from each of two tied clusters
        # (an answer that states nothing, e.g. an echo of the question, weighs 0)
        order, _ = agreement.order_candidates(list(texts), query, agreement.answer_weights(texts, query),
                                              threshold=threshold)
    else:
        order = top_k_by_centrality(vectors, n)
    if llm_text is None:
        return order[:k], base_name
    picks = parse_judge_output(llm_text, n, k)
    if len(picks) == k:
        return picks, "llm"
    rest = [i for i in order if i not in picks][: k - len(picks)]
    return picks + rest, (f"llm+{base_name}" if picks else f"{base_name}-fallback")


# ---------------------------------------------------------------- the pipeline

Pipeline = Generator[list, list, dict]


def pipeline(query: str, cfg: MoAConfig) -> Pipeline:
    """The MoA / SMoA pipeline for one query (see the module docstring for the protocol)."""
    if not query or not query.strip():
        raise MoAConfigError("the query is empty")
    job = itertools.count()
    trace: dict[str, Any] = {"mode": cfg.mode, "query": query, "config": _config_dict(cfg), "layers": []}
    calls: list[dict] = []

    def gen(model, messages, temperature, seed=None):
        i = next(job)
        return Generate(job_id=f"g{i}", messages=tuple(messages), model=model,
                        params=GenParams(max_tokens=cfg.max_tokens, temperature=temperature,
                                         seed=cfg.seed + i if seed is None else seed))

    def pseed(p, layer):
        return None if p.seed is None else p.seed + layer

    def account(kind, result):
        calls.append({"kind": kind, "prompt_tokens": getattr(result, "prompt_tokens", getattr(result, "tokens", 0)),
                      "completion_tokens": getattr(result, "completion_tokens", 0), "llm_s": result.llm_s})

    if cfg.mode == "single":
        (g,) = yield [gen(cfg.aggregator_model, [ChatMessage("user", query)], 0.3)]
        account("single", g)
        trace["aggregator"] = _gen_dict(g)
        trace["answer"] = g.text
        trace["totals"] = _totals(calls)
        return trace

    if cfg.mode == "cascade":
        texts: list[str] = []
        tiers = [cfg.proposers[: cfg.cascade_first], cfg.proposers[cfg.cascade_first:]]
        for level, tier in enumerate(tiers, 1):
            if not tier:
                continue
            results = yield [gen(p.model, (ChatMessage("system", p.role), ChatMessage("user", query)),
                                 p.temperature, pseed(p, 0)) for p in tier]
            for r in results:
                account("proposer", r)
            texts += [r.text for r in results]
            trace["layers"].append({"index": level - 1, "responses": [
                {"proposer": len(texts) - len(results) + i, "role": p.role, "temperature": p.temperature,
                 **_gen_dict(r)} for i, (p, r) in enumerate(zip(tier, results))]})
            m = min(2, len(texts)) if level == 1 else 2
            v = cascade_policy.tier_agrees(texts, query, m, cfg.agreement_threshold)
            if level == 1 and v.agreed:
                trace.update(answer=texts[v.leader], exit_level=1,
                             exit_reason=f"{v.size} of the first {len(texts)} answers agree")
                break
            if level == 2 or not tiers[1]:
                leader = v.leader if v.leader is not None else 0
                trace.update(answer=texts[leader], exit_level=2 if v.agreed else 3,
                             exit_reason=f"largest cluster {v.size} of {len(texts)} answers")
        trace["clusters"] = [list(c.members) for c in agreement.clusters(texts, query, threshold=cfg.agreement_threshold)]
        trace["totals"] = _totals(calls)
        return trace

    prev: list[str] = []
    stopped_early = agreed = False
    for layer in range(cfg.layers):
        effects = []
        for p in cfg.proposers:
            msgs = aggregate_messages(query, prev, p.role) if prev else (
                ChatMessage("system", p.role), ChatMessage("user", query))
            effects.append(gen(p.model, msgs, p.temperature, pseed(p, layer)))
        results = yield effects
        for r in results:
            account("proposer", r)
        texts = [r.text for r in results]
        entry: dict[str, Any] = {"index": layer, "responses": [
            {"proposer": i, "role": p.role, "temperature": p.temperature, **_gen_dict(r)}
            for i, (p, r) in enumerate(zip(cfg.proposers, results))]}
        trace["layers"].append(entry)
        if cfg.mode == "moa":
            prev = texts
            continue

        # Sparse MoA: judge keeps k, moderator may stop.
        vecs = None
        if cfg.judge == "centrality":
            (emb,) = yield [Embed(job_id=f"e{next(job)}", texts=tuple(t or " " for t in texts))]
            account("embed", emb)
            vecs = emb.vectors
        llm_text = None
        if cfg.judge == "llm":
            (jg,) = yield [gen(cfg.aggregator_model, judge_messages(query, texts, cfg.k), 0.0)]
            account("judge", jg)
            llm_text = jg.text
        use_texts = None if cfg.judge == "centrality" else texts
        kept, method = select(vecs, cfg.k, llm_text, use_texts, query, cfg.agreement_threshold)
        groups = agreement.clusters(texts, query, threshold=cfg.agreement_threshold)
        canon = [agreement.canonical_answer(t) for t in texts]
        entry["judge"] = {"method": method, "kept": kept, "canonical": canon,
                          "clusters": [list(c.members) for c in groups],
                          "centrality": None if vecs is None else [round(float(c), 4) for c in centrality(vecs)],
                          "llm_output": llm_text,
                          "reason": f"kept {kept} of {len(texts)} ({method}); largest agreeing cluster "
                                    f"{list(groups[0].members)} says {canon[groups[0].leader]!r}"}
        kept_texts = [texts[i] for i in kept]
        kept_groups = agreement.clusters(kept_texts, query, threshold=cfg.agreement_threshold)
        agree = len(kept_groups) == 1 and agreement.states_answer(canon[kept[0]], query, canonical=False)
        share = max(len(c.members) for c in kept_groups) / len(kept_texts)
        decision, mod_method, llm_reply = None, cfg.moderator, None
        if cfg.moderator == "llm" and layer < cfg.layers - 1:
            (mg,) = yield [gen(cfg.aggregator_model, moderator_messages(query, kept_texts), 0.0)]
            account("moderator", mg)
            llm_reply = mg.text
            decision = parse_moderator_output(mg.text)
            if decision is None:
                mod_method = "llm->agreement-fallback"
        if decision is None:
            decision = cfg.moderator != "never" and agree
        last = layer == cfg.layers - 1
        said = " vs ".join(repr(canon[kept[c.leader]]) for c in kept_groups)
        if last:
            reason = "last layer"
        elif mod_method == "llm":
            reason = f"llm moderator replied {' '.join((llm_reply or '').split())[:60]!r}"
        elif cfg.moderator == "never":
            reason = "moderator never stops"
        else:
            reason = (f"kept answers agree: {said}" if agree else f"kept answers disagree: {said}")
        entry["moderator"] = {"method": mod_method, "agreement": round(share, 4), "agree": agree,
                              "llm_output": llm_reply, "stop": bool(decision and not last), "reason": reason}
        prev = kept_texts
        agreed = agree and cfg.moderator != "never"
        if decision and not last:
            stopped_early = True
            break

    if cfg.mode == "smoa" and agreed:
        # The kept answers state the same answer: an aggregator can only reword it (measured:
        # it also rewrote correct agreed answers into wrong ones), so the cluster's answer is final.
        trace["aggregator"] = {"skipped": True, "reason": "kept answers agree; their answer is final"}
        trace["answer"] = prev[0]
        trace["stopped_early"] = stopped_early
        trace["totals"] = _totals(calls)
        return trace
    (agg,) = yield [gen(cfg.aggregator_model, aggregate_messages(query, prev), 0.3)]
    account("aggregator", agg)
    trace["aggregator"] = _gen_dict(agg)
    trace["answer"] = agg.text
    trace["stopped_early"] = stopped_early
    trace["totals"] = _totals(calls)
    return trace


def _gen_dict(g) -> dict:
    return {"model": g.model_id, "text": g.text, "prompt_tokens": g.prompt_tokens,
            "completion_tokens": g.completion_tokens, "llm_s": round(g.llm_s, 4)}


def _config_dict(cfg: MoAConfig) -> dict:
    d = asdict(cfg)
    d["proposers"] = [asdict(p) for p in cfg.proposers]
    return d


def _totals(calls: list[dict]) -> dict:
    gen_calls = [c for c in calls if c["kind"] != "embed"]
    emb_calls = [c for c in calls if c["kind"] == "embed"]
    pt = sum(c["prompt_tokens"] for c in gen_calls)
    ct = sum(c["completion_tokens"] for c in gen_calls)
    et = sum(c["prompt_tokens"] for c in emb_calls)
    return {"calls": len(gen_calls), "embed_calls": len(emb_calls), "prompt_tokens": pt,
            "completion_tokens": ct, "embed_tokens": et, "tokens": pt + ct + et,
            "llm_s": round(sum(c["llm_s"] for c in calls), 4)}


# ---------------------------------------------------------------- a local driver

def run_local(query: str, cfg: MoAConfig, generators: Mapping[str | None, Any] | Callable,
              embedder=None, *, on_step: Callable[[str], None] | None = None) -> dict:
    """Drive :func:`pipeline` on this machine, one call at a time.

    Args:
        generators: maps a proposer's ``model`` (None = default) to a TextGenerator, or a
            callable ``model -> TextGenerator`` (e.g. a lazy loader).
        embedder: needed only for ``smoa`` with judge ``centrality`` (embedding space).
        on_step: called with a short description before each call (progress display).

    Returns:
        The trace, with ``totals.wall_s`` and ``totals.overhead_s`` (wall time outside the models).
    """
    get = generators if callable(generators) else (lambda m: generators[m] if m in generators else generators[None])
    t0 = time.perf_counter()
    p = pipeline(query, cfg)
    results = None
    try:
        while True:
            effects = p.send(results)
            results = []
            for e in effects:
                if isinstance(e, Generate):
                    if on_step:
                        on_step(f"generate {e.job_id} ({e.model or 'default'})")
                    results.append(get(e.model).generate(e.messages, e.params))
                elif isinstance(e, Embed):
                    if embedder is None:
                        raise MoAConfigError("the centrality judge needs an embedder")
                    if on_step:
                        on_step(f"embed {len(e.texts)} texts")
                    results.append(embedder.embed_with_stats(list(e.texts)))
                else:  # pragma: no cover - the pipeline only yields these two
                    raise TypeError(f"unexpected effect {e!r}")
    except StopIteration as stop:
        trace = stop.value
    wall = time.perf_counter() - t0
    trace["totals"]["wall_s"] = round(wall, 4)
    trace["totals"]["overhead_s"] = round(max(0.0, wall - trace["totals"]["llm_s"]), 4)
    return trace


# ---------------------------------------------------------------- roles

ROLE_PROMPT = ("Dataset: {d}\nTask: {t}\n\nWrite {n} different expert roles that could solve this task well. "
               "One role per line, each starting with 'You are'.")


def parse_roles(text: str, n: int) -> list[str]:
    """Role lines from free text (numbering and bullets stripped); at most n, maybe fewer."""
    roles = []
    for line in (text or "").splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip()
        if len(line) >= 12 and line.lower().startswith("you are") and line not in roles:
            roles.append(line[:300])
        if len(roles) == n:
            break
    return roles


def generate_roles(description: str, requirement: str, n: int, generator, *,
                   cache_dir: Path | None = None) -> tuple[list[str], str]:
    """Role descriptions for n proposers, generated once from (D, T) and cached.

    Returns:
        (roles, source) where source is ``cache``, ``generated``, or
        ``generated+defaults`` when the model gave fewer than n usable lines (the rest are
        taken from DEFAULT_ROLES, in order).
    """
    key = hashlib.sha256(json.dumps([description, requirement, n, generator.model_id]).encode()).hexdigest()[:16]
    path = (cache_dir / f"roles-{key}.json") if cache_dir else None
    if path and path.exists():
        return json.loads(path.read_text()), "cache"
    g = generator.generate((ChatMessage("user", ROLE_PROMPT.format(d=description, t=requirement, n=n)),),
                           GenParams(max_tokens=40 * n, temperature=0.7, seed=0))
    roles = parse_roles(g.text, n)
    source = "generated"
    if len(roles) < n:
        roles += [r for r in DEFAULT_ROLES if r not in roles][: n - len(roles)]
        source = "generated+defaults"
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(roles))
    return roles, source


def load_roles(path: Path) -> list[str]:
    """A roles file: a JSON list of strings, or one role per non-empty line."""
    text = Path(path).read_text()
    try:
        roles = json.loads(text)
        if not (isinstance(roles, list) and all(isinstance(r, str) for r in roles)):
            raise MoAConfigError(f"{path}: JSON roles file must be a list of strings")
    except json.JSONDecodeError:
        roles = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not roles:
        raise MoAConfigError(f"{path}: no roles in file")
    return roles


def make_proposers(n: int, models: Sequence[str | None], roles: Sequence[str]) -> tuple[Proposer, ...]:
    """n proposers cycling through models and roles, temperatures spread over 0.6..0.9."""
    temps = [0.7, 0.8, 0.6, 0.9]
    return tuple(Proposer(model=models[i % len(models)], role=roles[i % len(roles)],
                          temperature=temps[i % len(temps)]) for i in range(n))


def with_mode(cfg: MoAConfig, mode: str) -> MoAConfig:
    return replace(cfg, mode=mode)
