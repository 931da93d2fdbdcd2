"""Chat-message text helpers shared by the tasks, the judge and the engines: the text of a completion or a prompt,
whether TRL passes plain strings or chat messages (``[{"role", "content"}]``, content possibly a list of parts).

Pure functions of their argument, no varpo imports: every wing may use them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def completion_text(completion: Any) -> str:
    """The text of one completion, whether TRL passes a plain string or chat messages.

    Chat completions are lists of `{"role", "content"}` dicts (TRL: `[{"role": "assistant", "content": ...}]`);
    the assistant messages' contents are joined (all messages if none is marked assistant). Content given as a
    list of parts (`[{"type": "text", "text": ...}]`) is flattened. Anything else reads as "".
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if not isinstance(completion, Sequence) or isinstance(completion, bytes | bytearray):
        return ""
    messages = [m for m in completion if isinstance(m, Mapping)]
    assistant = [m for m in messages if m.get("role") == "assistant"]
    return "".join(_content_text(m.get("content")) for m in (assistant or messages))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return ""


def prompt_text(prompt: Any) -> str:
    """A prompt as one string: plain prompts as they are, chat prompts as their contents joined by blank lines."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence) and not isinstance(prompt, bytes | bytearray):
        return "\n\n".join(_content_text(m.get("content")) for m in prompt if isinstance(m, Mapping))
    return ""


def as_chat(text: str, role: str) -> list[dict[str, str]]:
    return [{"role": role, "content": text}]


def conversation_text(prompt: Any) -> str:
    """A prompt for the judge: plain text as is; chat messages as "role: content" turns separated by blank lines."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence) and not isinstance(prompt, bytes | bytearray):
        turns = []
        for m in prompt:
            if isinstance(m, Mapping):
                turns.append(
                    f"{m.get('role', 'user')}: {completion_text([{'role': 'x', 'content': m.get('content')}])}"
                )
        return "\n\n".join(turns)
    return ""
