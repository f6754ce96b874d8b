"""Prefix-cache accounting the way vLLM counts it: queried tokens and hits in whole blocks.

vLLM hashes each full KV block of a prompt together with everything before it, so a block is
a hit only when the whole prefix up to its end was seen before and is still cached. The
emulator keeps the same chained hashes in an LRU bounded by the KV cache's block count, so
`vllm:prefix_cache_hits` follows shared system prompts and multi-turn chats realistically.
The sizing engine models no prefix cache: a hit is counted but the prefill is not shortened.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from e2e.emulator.tokens import Token


class PrefixCache:
    def __init__(self, capacity_blocks: int, block_size: int) -> None:
        self.capacity_blocks = capacity_blocks
        self.block_size = block_size
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def query(self, prompt: Sequence[Token]) -> int:
        """Tokens of `prompt` served from cache; then the prompt's blocks are cached."""
        hits = 0
        still_hitting = True
        parent = 0
        for start in range(0, len(prompt) - self.block_size + 1, self.block_size):
            key = hash((parent, tuple(prompt[start : start + self.block_size])))
            if still_hitting and key in self._blocks:
                hits += self.block_size
                self._blocks.move_to_end(key)
            else:
                still_hitting = False
                self._blocks[key] = None
            parent = key
        while len(self._blocks) > self.capacity_blocks:
            self._blocks.popitem(last=False)
        return hits
