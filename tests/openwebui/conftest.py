"""The Open WebUI end-to-end tests run only with ``make test-openwebui`` (RAG_MW_OPENWEBUI=1): they install
Open WebUI into its own venv and start two servers, far too slow for ``make test``."""

import os

if os.environ.get("RAG_MW_OPENWEBUI") != "1":
    collect_ignore_glob = ["test_*.py"]
