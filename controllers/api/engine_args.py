"""`spec.model.extraArgs` against the vLLM flags inferfleet sets, and secrets kept out of text.

The operator renders the layout, limits and port from the plan; a user flag that sets one of
them again would silently undo the plan (vLLM keeps the last value) or break the pod (a second
`--port` misses the probes). A token flag would put a secret into the Deployment, Kopf's
last-handled annotation and the logs, so it is refused too: `model.hub.tokenSecretRef` passes the
Hugging Face token as an env var from a Secret instead.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

# Every flag `controllers.policy.render.vllm_args` writes (a unit test keeps the two equal),
# with vLLM's short aliases, and the flags that change how many GPUs a replica uses.
MANAGED_FLAGS = frozenset(
    {
        "--model",
        "--port",
        "--host",
        "--tensor-parallel-size",
        "-tp",
        "--pipeline-parallel-size",
        "-pp",
        "--data-parallel-size",
        "-dp",
        "--max-model-len",
        "--gpu-memory-utilization",
        "--max-num-seqs",
        "--max-num-batched-tokens",
        "--dtype",
        "--quantization",
        "-q",
        "--kv-cache-dtype",
        "--enable-prefix-caching",
        "--no-enable-prefix-caching",
        "--enforce-eager",
        "--enable-lora",
        "--max-loras",
        "--max-lora-rank",
    }
)
# Where each managed flag comes from, for the error message.
_SET_FROM = {
    "--model": "spec.model.name",
    "--dtype": "spec.model.dtype",
    "--quantization": "spec.model.quantization",
    "-q": "spec.model.quantization",
    "--kv-cache-dtype": "spec.model.kvCacheDtype",
    "--gpu-memory-utilization": "spec.serving.gpuMemoryUtilization",
    "--max-num-seqs": "spec.serving.maxNumSeqs",
    "--max-num-batched-tokens": "spec.serving.maxNumBatchedTokens",
    "--enable-prefix-caching": "spec.serving.enablePrefixCaching",
    "--no-enable-prefix-caching": "spec.serving.enablePrefixCaching",
    "--enforce-eager": "spec.serving.enforceEager",
    "--enable-lora": "spec.model.lora",
    "--max-loras": "spec.model.lora",
    "--max-lora-rank": "spec.model.lora",
    "--max-model-len": "spec.workload.maxModelLen",
}
# A flag whose value is a credential: `--hf-token`, `--api-key`, `--ssl-keyfile-password`; a
# whole word of the name, so `--max-num-batched-tokens` and `--tokenizer` are not.
SECRET_FLAG = r"--?(?:[A-Za-z0-9]+[-_])*(?:token|api[-_]?key|password|secret)(?:[-_][A-Za-z0-9]+)*"
_SECRET_NAME = re.compile(SECRET_FLAG + r"$", re.IGNORECASE)
# `--name=value`, `--name value` or `'--name', 'value'` in free text (logs, Events, errors).
_SECRET_IN_TEXT = re.compile(
    rf"""(?<![A-Za-z0-9-])({SECRET_FLAG})(?![A-Za-z0-9])(=|\s+|['"]?,\s*['"]?)([^\s'",\]]+)""",
    re.IGNORECASE,
)
REDACTED = "<redacted>"
# Bounds the API server's CEL cost estimate needs (and no real command line comes near).
MAX_EXTRA_ARGS = 64
MAX_EXTRA_ARG_CHARS = 2048


def flag_name(arg: str) -> str | None:
    """`--Max_Model_Len=8192` -> `--max-model-len`; None for a value (not a flag)."""
    if not arg.startswith("-") or arg in ("-", "--") or _is_number(arg):
        return None
    name = arg.split("=", 1)[0].strip()
    dashes = len(name) - len(name.lstrip("-"))
    return name[:dashes] + name[dashes:].replace("_", "-").lower()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_secret_flag(name: str) -> bool:
    return bool(_SECRET_NAME.match(name))


@dataclass(frozen=True)
class EngineExtras:
    """What extraArgs change in the replica's memory: speculative decoding, the multimodal
    processor's image size, the hybrid models' state cache mode."""

    speculative_method: str | None = None
    num_speculative_tokens: int = 0
    mm_max_pixels: int | None = None
    mamba_cache_mode: str = "auto"


_MAMBA_MODES = ("none", "align", "all")


def _flag_values(args: list[str]) -> dict[str, tuple[int, str]]:
    """`--name=value` or `--name value` of every flag, by normalized name: (index, value)."""
    found: dict[str, tuple[int, str]] = {}
    for index, arg in enumerate(args):
        name = flag_name(arg)
        if name is None:
            continue
        if "=" in arg:
            found[name] = (index, arg.split("=", 1)[1])
        elif index + 1 < len(args) and flag_name(args[index + 1]) is None:
            found[name] = (index, args[index + 1])
    return found


def _json_object(where: str, name: str, raw: str) -> dict:
    try:
        value = json.loads(raw)
    except ValueError:
        raise ValueError(f"{where}: {name} must be a JSON object, got invalid JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {name} must be a JSON object, got {type(value).__name__}")
    return value


def _positive_int(where: str, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: {field} must be an integer >= 1, got {value!r}")
    return value


def _speculative(index: int, raw: str) -> tuple[str, int]:
    where = f"extraArgs[{index}]"
    spec = _json_object(where, "--speculative-config", raw)
    method = spec.get("method") or ("draft_model" if spec.get("model") else "mtp")
    if not isinstance(method, str):
        raise ValueError(f"{where}: --speculative-config method must be a string")
    tokens = spec.get("num_speculative_tokens", 1 if method.endswith("mtp") else None)
    return method, _positive_int(where, "--speculative-config num_speculative_tokens", tokens)


def engine_extras(args: list[str]) -> EngineExtras:
    """Read --speculative-config, --mm-processor-kwargs and --mamba-cache-mode the way vLLM
    does (a speculative config without a method drafts with the model's own MTP modules, or
    with its `model` when it names one); a bad value is a ValueError naming the argument."""
    values = _flag_values(args)
    method, tokens = None, 0
    if "--speculative-config" in values:
        method, tokens = _speculative(*values["--speculative-config"])
    max_pixels = None
    if "--mm-processor-kwargs" in values:
        index, raw = values["--mm-processor-kwargs"]
        where = f"extraArgs[{index}]"
        kwargs = _json_object(where, "--mm-processor-kwargs", raw)
        if "max_pixels" in kwargs:
            max_pixels = _positive_int(
                where, "--mm-processor-kwargs max_pixels", kwargs["max_pixels"]
            )
    mode = "auto"
    if "--mamba-cache-mode" in values:
        index, mode = values["--mamba-cache-mode"]
        if mode not in _MAMBA_MODES:
            raise ValueError(
                f"extraArgs[{index}]: --mamba-cache-mode must be one of "
                f"{', '.join(_MAMBA_MODES)}, got {mode!r}"
            )
    return EngineExtras(method, tokens, max_pixels, mode)


def check_extra_args(args: list[str]) -> list[str]:
    """Refuse flags the operator manages or that carry a secret; the message never holds a
    value (it may be the secret)."""
    for index, arg in enumerate(args):
        where = f"extraArgs[{index}]"
        if "\x00" in arg or "\n" in arg:
            raise ValueError(f"{where} holds a NUL or newline character")
        name = flag_name(arg)
        if name is None:
            continue
        if is_secret_flag(name):
            raise ValueError(
                f"{where}: {name} would put a secret in the Deployment, annotations and logs; "
                "set spec.model.hub.tokenSecretRef (a Secret key passed as the HF_TOKEN env "
                "var) instead"
            )
        if name in MANAGED_FLAGS:
            source = _SET_FROM.get(name, "the plan")
            raise ValueError(
                f"{where}: {name} is set by inferfleet (from {source}); remove it from "
                "extraArgs and change that field instead"
            )
    engine_extras(args)
    return args


def redact(text: str) -> str:
    """`--hf-token=hf_abc` -> `--hf-token=<redacted>`; also `--api-key abc` and list reprs."""
    return _SECRET_IN_TEXT.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
