"""`--model NAME` for the CLI: the operator's resolution (built-in catalog, then the Hub).

The Hub is the one `HF_ENDPOINT` names (a mirror) with the token in `HF_TOKEN`; `--offline` (or
`HF_HUB_OFFLINE=1`) asks the catalog only. A model no source has is one line naming what was
tried, exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from inferfleet.errors import UsageError

if TYPE_CHECKING:
    from controllers.adapters.model_source import ResolvedModel
    from sizing.model import ModelArch


def add_model_arguments(parser: argparse.ArgumentParser | Any) -> None:
    """--model-config PATH or --model NAME (one of them), --revision, --offline."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-config", metavar="PATH", help="the model's config.json")
    source.add_argument("--model", metavar="NAME",
                        help="a Hugging Face repo id, resolved like the operator does: the "
                             "built-in catalog, then the Hub (HF_ENDPOINT, HF_TOKEN)")  # fmt: skip
    add_hub_arguments(parser)


def add_hub_arguments(parser: argparse.ArgumentParser | Any) -> None:
    parser.add_argument("--revision", metavar="REV", help="Hub revision for --model (default main)")
    parser.add_argument("--offline", action="store_true",
                        help="never ask the Hub: the built-in catalog only")  # fmt: skip


def resolve_model(name: str, revision: str | None, offline: bool) -> ResolvedModel:
    from controllers.adapters.hub_settings import HubSettings
    from controllers.adapters.model_source import ModelConfigUnavailable, ModelResolver

    settings = HubSettings.from_env()
    if offline:
        settings = replace(settings, offline=True)
    try:
        return asyncio.run(ModelResolver(settings).resolve(name, revision))
    except ModelConfigUnavailable as err:
        raise UsageError(f"--model: {err}") from None


def load_arch(
    args: argparse.Namespace, params_b: float | None = None, what: str = "config.json"
) -> ModelArch:
    """The model from --model-config (`what` names it in errors) or --model (with exact
    weights when the Hub had them)."""
    from inferfleet.manifests import load_json_file
    from sizing.model import load_model_config, with_checkpoint

    if args.model_config:
        config = load_json_file(args.model_config, what)
        return load_model_config(config, params_b=params_b, name=args.model_config)
    found = resolve_model(args.model, args.revision, args.offline)
    arch = load_model_config(found.config, params_b=params_b, name=args.model)
    if found.checkpoint is None:
        return arch
    return with_checkpoint(arch, found.checkpoint, keep_params=params_b is not None)
