"""Write a tiny randomly initialised Llama and a word-level tokenizer for the real_vllm tests.

Run with the vLLM venv's Python (it has torch, transformers and tokenizers); no hub access.
The shapes are the smallest vLLM's CPU attention kernels accept (head size 32; 16 is rejected at
the first request). The vocabulary is words `w0`..`w{N-1}`, so the token ids `inferfleet bench`
sends (below 30,000) are all valid and its chat prompts (`w123 w456 ...`) tokenize one word to one
token, which keeps prompt lengths exact. A second argument gives a smaller vocabulary: a server
of that model answers `inferfleet bench`'s larger ids with an error inside its 200 stream.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

DEFAULT_VOCAB_SIZE = 32_000
SPECIAL = ("<unk>", "<s>", "</s>")
# A plain template so /v1/chat/completions works: the messages' contents, one after the other.
CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }} {% endfor %}"


def write_tokenizer(out: Path, vocab_size: int) -> None:
    vocab = {token: i for i, token in enumerate(SPECIAL)}
    vocab.update({f"w{i}": i for i in range(len(SPECIAL), vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)


def write_model(out: Path, vocab_size: int) -> None:
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        torch_dtype="float32",
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)


def main() -> None:
    out = Path(sys.argv[1])
    vocab_size = int(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_VOCAB_SIZE
    partial = out.with_name(out.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    write_tokenizer(partial, vocab_size)
    write_model(partial, vocab_size)
    partial.replace(out)  # config.json appears only with the whole model


if __name__ == "__main__":
    main()
