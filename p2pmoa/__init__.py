"""p2pmoa: the agent network's domain (messages, identity, LLM and embedding backends,
MoA/SMoA pipeline, prompt buffer, trust and the sans-I/O peer protocol).

Imports nothing from node/ or simulations/ (see docs/architecture.md).
"""
__version__ = "0.1.0"
