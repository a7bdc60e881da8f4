"""Runs the real ``rag-middleware`` CLI in its own process with the test doubles (HashEmbedder, a FakeLLM),
so a test can drive an interactive command through a pseudo-terminal. Usage: python cli_driver.py ARGS..."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import FakeLLM, HashEmbedder  # noqa: E402

from rag_middleware.cli import main  # noqa: E402
from rag_middleware.cli.context import CliState  # noqa: E402
from rag_middleware.request.pipeline import Middleware  # noqa: E402
from rag_middleware.llm.tokens import ApproxTokenCounter  # noqa: E402


def _middleware(self: CliState, **extra):
    return Middleware(self.settings(**extra), backend=FakeLLM(), embedder=HashEmbedder(),
                      token_counter=ApproxTokenCounter())


if __name__ == "__main__":
    CliState.middleware = _middleware
    main(sys.argv[1:])
