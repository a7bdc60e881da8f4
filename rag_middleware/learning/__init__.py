"""What turns answers into better answers: reviewers' feedback (also synced from Open WebUI), mining their
edits, tuning a domain's settings, fine-tune export with PII masking.

May import: everything below it (ground floor, llm, memory, templating, domains, request, analytics).
"""
