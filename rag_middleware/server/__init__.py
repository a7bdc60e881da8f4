"""The drop-in server: Ollama's API (and OpenAI's chat completions) in front of Ollama or the embedded model.

May import: every package except cli.
"""

from .app import create_app

__all__ = ["create_app"]
