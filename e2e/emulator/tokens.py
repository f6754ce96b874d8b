"""How the emulator counts tokens without a tokenizer.

A prompt given as token ids (OpenAI's `prompt: [int, ...]`) counts exactly. Text counts one
token per whitespace-separated word: real tokenizers give ~1.3 tokens per English word, but
a fixed, documented rule lets a client choose its prompt length exactly (`inferfleet bench`
sends words for chat and ids for completions). Chat messages count the words of every
message's content; the chat template's few extra tokens are not modelled.
"""

from __future__ import annotations


class PromptError(ValueError):
    """The request's prompt cannot be understood; the message says what was expected."""


Token = int | str  # a token id, or a word standing for one


def _words(text: str) -> tuple[Token, ...]:
    return tuple(text.split())


def prompt_tokens(prompt: object) -> tuple[Token, ...]:
    """Tokens of a completions `prompt`: a string, a list of token ids, or a batch of one."""
    if isinstance(prompt, str):
        return _words(prompt)
    if isinstance(prompt, list):
        if len(prompt) == 1 and isinstance(prompt[0], str | list):
            return prompt_tokens(prompt[0])
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return tuple(prompt)
    raise PromptError(
        "prompt must be a string, a list of token ids, or a list holding one of those "
        "(the emulator serves one prompt per request)"
    )


def message_tokens(messages: object) -> tuple[Token, ...]:
    """Tokens of a chat `messages` list: words of each message's text content."""
    if not isinstance(messages, list) or not messages:
        raise PromptError("messages must be a non-empty list of {role, content} objects")
    total: tuple[Token, ...] = ()
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise PromptError(f"messages[{i}] must be an object with role and content")
        content = message.get("content", "")
        if isinstance(content, str):
            total += _words(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    total += _words(str(part.get("text", "")))
        else:
            raise PromptError(f"messages[{i}].content must be a string or a list of parts")
    return total
