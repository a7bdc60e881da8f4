"""What the middleware remembers: the memory stores (SQLite, Weaviate behind an outbox), the interaction
journal, the shared SQLite connection and the embedders with their cache.

May import: the ground floor only (errors, config, records, options).
"""
