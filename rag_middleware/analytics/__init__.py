"""Reading what happened: stats, A/B statistics, replay with its reports, domain evaluation, template trials.

May import: the ground floor, llm, memory, templating, domains and request.
"""
