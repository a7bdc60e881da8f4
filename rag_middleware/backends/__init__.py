"""Backends: LLMs (``backends.llm``) and memory stores (``backends.store``), chosen by name from config."""
