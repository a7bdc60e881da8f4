"""Prompt templates: the sandboxed Jinja2 engine and template sets (engine), stored versions and labels
(versions), A/B variant assignment (variants) and the linter (lint). The .j2 files live in prompts/.

May import: the ground floor and memory (versions keep their rows in the data dir's SQLite).
lint receives the domains to render for; it names Domain only for type checking.
"""
