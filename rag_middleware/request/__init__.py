"""The request path, one stage per module, in the order a request meets them.

route (pipeline.Middleware resolves tenant, domain and variant) -> assemble (assembly: retrieve, select,
budget, render, grammar) -> generate and validate with retries (attempts) -> confidence -> record (pipeline).

Owns: Middleware, Assembler, the attempt loop, selection and confidence.
May import: the ground floor (errors, config, records, options), llm, memory, templating, domains.
"""
