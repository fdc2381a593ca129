"""The daemon's local model calls: load the generator and embedder a NodeConfig names, run
one call in a worker thread and hand its memory back, warm the weights up.

Split out of node/daemon.py (issue 10); ``node.daemon`` re-exports these names.
"""
from __future__ import annotations

import gc
import logging
import time

import trio

from node.config import STAND_IN_MODEL, NodeConfig
from p2pmoa.effects import ChatMessage, GenParams

log = logging.getLogger("node.daemon")


def load_generator(cfg: NodeConfig):
    """The local text generator named by ``cfg.model`` (real GGUF, or the named stand-in)."""
    from p2pmoa.llm import LlamaGenerator, StandInGenerator
    if cfg.model == STAND_IN_MODEL or cfg.model.startswith(STAND_IN_MODEL + ":"):
        name = cfg.model.split(":", 1)[1] if ":" in cfg.model else "node"
        gen = StandInGenerator(name)
        if cfg.stand_in_delay_s > 0:
            return _SlowStandIn(gen, cfg.stand_in_delay_s)
        return gen
    return LlamaGenerator.from_name(cfg.model, n_threads=cfg.threads)


class _SlowStandIn:
    """The stand-in generator plus a fixed service time (runs in the worker thread)."""

    def __init__(self, inner, delay_s: float) -> None:
        self.inner, self.delay_s, self.model_id = inner, delay_s, inner.model_id

    def generate(self, messages, params):
        time.sleep(self.delay_s)  # simulated model time, in a worker thread, not the event loop
        g = self.inner.generate(messages, params)
        import dataclasses
        return dataclasses.replace(g, llm_s=self.delay_s)


def generate_and_collect(generator, messages, params):
    """One generation, then a full garbage collection (in the worker thread, ~20 ms).

    Why (issue 9, "memory grows"): each llama-cpp-python completion leaves reference cycles
    holding about 3 MB (measured with gemma3-270m: +60 MB RSS over 20 calls, all of it given
    back by ``gc.collect()``; with a collection after every call RSS stayed flat over 60
    calls). A daemon allocates few Python objects between generations, so the cyclic
    collector's oldest generation rarely ran and RSS grew 1.19 -> 1.84 GB in an hour."""
    try:
        return generator.generate(messages, params)
    finally:
        release_memory()


def embed_and_release(embedder, texts):
    """One embedding call, then :func:`release_memory` (see :func:`generate_and_collect`)."""
    try:
        return embedder.embed(texts)
    finally:
        release_memory()


def release_memory() -> None:
    """Free reference cycles, then hand freed heap pages back to the OS (glibc
    ``malloc_trim``: worker threads allocate in their own malloc arenas, which keep freed
    memory otherwise). Called in the model worker threads after each call."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc():
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only; musl and others have no malloc_trim
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()


def load_embedder(cfg: NodeConfig):
    from node.config import effective_embedder
    from p2pmoa.embed import HashingEmbedder, LlamaEmbedder
    name = effective_embedder(cfg)
    if name in ("hashing", STAND_IN_MODEL):
        return HashingEmbedder(dim=64)
    return LlamaEmbedder(name, n_threads=cfg.threads)


async def warm_up(generator, cfg: NodeConfig, timeout_s: float = 120.0):
    """One generation at the node's own ``max_tokens`` to page the weights in (the first real
    call was 2-5x slower). Its time is logged, NOT fed to admission's service time α: under
    load it took 26-70 s and locked the node out (issue 9); α comes from real queries only."""
    with trio.move_on_after(timeout_s):
        warm = await trio.to_thread.run_sync(
            generator.generate, (ChatMessage("user", "Say hello in one short sentence."),),
            GenParams(max_tokens=cfg.max_tokens, temperature=0.0), abandon_on_cancel=True)
        log.info("warm-up generation: %d tokens in %.2f s (not counted in admission's alpha)",
                 warm.completion_tokens, warm.llm_s)
        return warm
    return None
