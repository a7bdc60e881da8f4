"""The shapes of the requests Open WebUI 0.12 sends to an Ollama connection, written out for our tests.

Each builder returns the ``messages`` of one request as Open WebUI assembles it: where the text goes (which
role, what comes first) and the markers our routing keys on (``### Task:``, ``<context>``, the JSON keys a
task asks for, the opening sentence of the prompts without ``### Task:``). The instructions in between are
our own abbreviations, not Open WebUI's wording; test_server_openwebui.py checks the routing against the
installed Open WebUI's own templates too, when ``.venv-owui`` is there.
"""

from __future__ import annotations

from typing import Any

Messages = list[dict[str, Any]]

QUESTION = "Columns: region, amount\nSort the rows by amount, largest first"
SOURCES = ('<source id="1" name="sales.csv">region,amount\nnorth,10\nsouth,7</source>\n'
           '<source id="2" name="notes.md">Amounts are in euros.</source>')
# the chat-completion request and headers Open WebUI sends with ENABLE_FORWARD_USER_INFO_HEADERS=true
FORWARDED = {"X-OpenWebUI-User-Name": "Ada", "X-OpenWebUI-User-Id": "u-1", "X-OpenWebUI-User-Email": "a@x.io",
             "X-OpenWebUI-User-Role": "admin", "X-OpenWebUI-Chat-Id": "chat-42", "X-OpenWebUI-Message-Id": "msg-7"}


def _history(messages: Messages) -> str:
    """``{{MESSAGES:END:n}}``: one ``ROLE: text`` line per message."""
    return "\n".join(f"{m['role'].upper()}: {m['content']}" for m in messages)


def rag_template(context: str) -> str:
    """The RAG template with the context filled in: task, guidelines, then the context last."""
    return ("### Task:\nRespond to the user query using the provided context, citing [id] only when the <source> "
            "tag has an id attribute.\n\n### Guidelines:\n- If you don't know the answer, clearly state that.\n"
            "- Respond in the same language as the user's query.\n\n### Output:\nProvide a clear and direct "
            f"response to the user's query.\n\n<context>\n{context}\n</context>\n")


def rag_chat(question: str = QUESTION, context: str = SOURCES, history: Messages | None = None) -> Messages:
    """A chat with an attached file / knowledge base / web search: the template before the user's message."""
    return [*(history or []), {"role": "user", "content": f"{rag_template(context)}\n{question}"}]


def rag_chat_system(question: str = QUESTION, context: str = SOURCES, system: str = "") -> Messages:
    """The same with ``RAG_SYSTEM_CONTEXT=true``: the template appended to the system message."""
    content = f"{system}\n{rag_template(context)}" if system else rag_template(context)
    return [{"role": "system", "content": content}, {"role": "user", "content": question}]


def rag_chat_user_query(question: str = QUESTION, context: str = SOURCES) -> Messages:
    """An older (0.5) template: the question repeated in ``<user_query>`` after the context."""
    text = (f"### Task:\nRespond to the user query using the provided context.\n\n<context>\n{context}\n</context>\n\n"
            f"<user_query>\n{question}\n</user_query>\n")
    return [{"role": "user", "content": text}]


CHAT = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": '{"task": "sort"}'}]


def _task(body: str, history_messages: int = 2) -> Messages:
    return [{"role": "user", "content": f"{body}\n### Chat History:\n<chat_history>\n"
                                        f"{_history(CHAT[-history_messages:])}\n</chat_history>"}]


def title() -> Messages:
    return _task('### Task:\nGenerate a concise title summarizing the chat history.\n### Guidelines:\n'
                 '- Keep it short: 2-4 words is best.\n'
                 '### Output:\nJSON format: { "title": "your concise title here" }')


def tags() -> Messages:
    return _task('### Task:\nGenerate 1-3 broad tags categorizing the main themes of the chat history.\n\n'
                 '### Output:\nJSON format: { "tags": ["tag1", "tag2", "tag3"] }')


def follow_ups() -> Messages:
    return _task('### Task:\nPredict 3-5 useful messages this user might naturally send next.\n### Output:\n'
                 'JSON format: { "follow_ups": ["Suggested next message 1", "Suggested next message 2"] }')


def queries() -> Messages:
    return _task('### Task:\nAnalyze the chat history to determine the necessity of generating search queries.\n\n'
                 '### Output:\nStrictly return in JSON format: \n{\n  "queries": ["query1", "query2"]\n}')


def autocomplete() -> Messages:
    return [{"role": "user", "content": "### Task:\nYou are an autocompletion system. Continue the text in `<text>`.\n"
                                        "---\n### Context:\n<chat_history>\n</chat_history>\n<type>General</type>\n"
                                        "<text>Sort the rows by</text>\n#### Output:\n"}]


def image_prompt() -> Messages:
    return _task('### Task:\nGenerate a detailed prompt for an image generation task.\n\n### Output:\n'
                 'Strictly return in JSON format:\n{\n    "prompt": "Your detailed description here."\n}')


def emoji(prompt: str = "That worked, thank you!") -> Messages:
    """Voice mode's emoji: no ``### Task:`` at all."""
    return [{"role": "user", "content": "Your task is to reflect the speaker's likely facial expression through a "
                                        f"fitting emoji.\n\nMessage: ```{prompt}```"}]


def merge_responses(prompt: str = QUESTION) -> Messages:
    """Merging the responses of several models (mixture of agents)."""
    return [{"role": "user", "content": "You have been provided with a set of responses from various models to the "
                                        f'latest user query: "{prompt}"\n\nYour task is to synthesize these '
                                        "responses into a single, high-quality response.\n\nResponses from models: "
                                        '"""a""" """b"""'}]


def tool_calls(prompt: str = QUESTION) -> Messages:
    """Tool choice for a model without native tool calling: the instructions in the system message."""
    system = ('Available Tools: [{"name": "get_weather", "parameters": {}}]\n\nYour task is to choose and return '
              'the correct tool(s) from the list of available tools based on the query.\n\nThe format for the JSON '
              'response is strictly:\n{\n  "tool_calls": [\n    {"name": "toolName1", "parameters": {}}\n  ]\n}')
    return [{"role": "system", "content": system}, {"role": "user", "content": f"Query: {prompt}"}]


# each background task Open WebUI runs -> the task name our routing gives it
TASKS = {"title": title, "tags": tags, "follow_ups": follow_ups, "queries": queries, "autocomplete": autocomplete,
         "task": image_prompt, "emoji": emoji, "merge_responses": merge_responses, "tool_calls": tool_calls}


def ollama_task_body(model: str, messages: Messages, *, stream: bool = False) -> dict[str, Any]:
    """A task request as Open WebUI sends it to /api/chat: ``max_tokens`` 1000 became ``num_predict``."""
    return {"model": model, "messages": messages, "stream": stream, "options": {"num_predict": 1000}}
