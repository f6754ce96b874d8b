"""`inferfleet plan FILE.yaml`: size an InferenceFleet manifest and explain every step."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

import yaml

from inferfleet.errors import UsageError
from inferfleet.manifests import load_fleet, resolve_hf_config
from inferfleet.models import add_hub_arguments, resolve_model
from inferfleet.tables import render_table

if TYPE_CHECKING:
    from sizing.plan import SizingPlan

NAME = "plan"
HELP = "size an InferenceFleet manifest with the 13-step algorithm and explain each decision"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="InferenceFleet YAML (the file you would kubectl apply)")
    parser.add_argument(
        "--hf-config",
        metavar="PATH",
        help="config.json to use when the manifest points at a ConfigMap (hfConfig.configMapRef)",
    )
    parser.add_argument(
        "--calibration",
        metavar="FILE.yaml",
        help="efficiency factors fitted by `inferfleet bench --calibrate` (step 10: the plan "
        "then uses the measured engine instead of the datasheet defaults)",
    )
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="size this Hugging Face repo id instead of spec.model.name, resolved like the "
        "operator does (built-in catalog, then the Hub); a manifest without hfConfig is "
        "resolved by its own spec.model.name the same way",
    )
    add_hub_arguments(parser)
    parser.add_argument("--output", choices=["text", "json", "yaml"], default="text")
    parser.add_argument(
        "--what-if", action="store_true", help="list every allowed pool side by side"
    )


def run(args: argparse.Namespace) -> int:
    fleet = load_fleet(args.file)
    spec = fleet.spec
    checkpoint = None
    if args.model and args.hf_config:
        raise UsageError("--model and --hf-config: give one source of config.json, not both")
    if args.model:
        model = spec.model.model_copy(update={"name": args.model, "hf_config": None})
        spec = spec.model_copy(update={"model": model})
    if spec.model.hf_config is None and not args.hf_config:
        found = resolve_model(spec.model.name, args.revision or spec.model.revision, args.offline)
        hf_config, checkpoint = found.config, found.checkpoint
        if args.output == "text":
            print(f"config.json of {spec.model.name}: {found.origin}")
    else:
        hf_config = resolve_hf_config(spec, args.hf_config)
    # Imported here so `inferfleet --help` and the other commands start without the numerics.
    from controllers.policy.planning import plan_spec, plan_status

    efficiency = None
    if args.calibration:
        from inferfleet.calibration import load_calibration

        efficiency = load_calibration(args.calibration)
    plan = plan_spec(spec, hf_config, efficiency=efficiency, checkpoint=checkpoint)
    if args.output == "text":
        print(format_plan(fleet.metadata.name, plan, what_if=args.what_if))
        return 0
    status = plan_status(plan).model_dump(by_alias=True, exclude_none=True)
    if args.what_if:
        status["whatIf"] = what_if_rows(plan)
    if args.output == "json":
        json.dump(status, sys.stdout, indent=2)
        print()
    else:
        yaml.safe_dump(status, sys.stdout, sort_keys=False, allow_unicode=True)
    return 0


def what_if_rows(plan: SizingPlan) -> list[dict[str, object]]:
    """Every allowed pool evaluated alone: fit, layout, capacity, price."""
    chosen = {a.option.pool.name for a in plan.allocations}
    rows: list[dict[str, object]] = []
    for o in sorted(plan.options, key=lambda o: o.cost_per_million_tokens_usd):
        if not o.fits or o.engine is None or o.capacity is None:
            rows.append({"pool": o.pool.name, "gpu": o.pool.gpu.name, "fits": False,
                         "why": o.why_not})  # fmt: skip
            continue
        rows.append(
            {
                "pool": o.pool.name,
                "gpu": o.pool.gpu.name,
                "fits": True,
                "chosen": o.pool.name in chosen,
                "quantization": o.quantization,
                "tp": o.engine.tp,
                "pp": o.engine.pp,
                "cMax": o.capacity.c_max,
                "usableRPSPerReplica": round(o.usable_rps, 3),
                "usableRPSBand": [round(v, 3) for v in o.usable_rps_band],
                "costPerMillionTokensAtCapacity": round(o.cost_per_million_tokens_usd, 4),
            }
        )
    return rows


def format_plan(name: str, plan: SizingPlan, *, what_if: bool = False) -> str:
    lines = [f"Plan for InferenceFleet {name}", ""]
    step_rows = [[f"{s.number}", s.title, s.decision] for s in plan.steps]
    width = max(len(r[1]) for r in step_rows)
    for s in plan.steps:
        lines.append(f"{s.number:>2}. {s.title:<{width}}  {s.decision}")
        lines.append(f"    {'':<{width}}  why: {s.reason}")
    lines.append("")
    from controllers.policy.planning import weight_format

    header = ["pool", "GPU", "weights", "TP", "PP", "replicas", "min warm", "C_max",
              "req/s/replica", "P10-P90", "GPUs", "$/hour", "$/1M tok@cap"]  # fmt: skip
    rows = []
    for a in plan.allocations:
        o = a.option
        assert o.engine is not None and o.capacity is not None
        rows.append([
            o.pool.name, o.pool.gpu.name, weight_format(o.quantization, plan),
            str(o.engine.tp), str(o.engine.pp),
            str(a.replicas), str(a.min_warm), str(o.capacity.c_max), f"{o.usable_rps:.2f}",
            f"{o.usable_rps_band[0]:.2f}-{o.usable_rps_band[2]:.2f}", str(a.gpus),
            f"{a.cost_per_hour_usd:,.2f}", f"{o.cost_per_million_tokens_usd:.3f}",
        ])  # fmt: skip
    lines.append(render_table(header, rows))
    lines.append(
        f"total: {plan.total_replicas} replicas, {plan.total_gpus} GPUs, "
        f"${plan.cost_per_hour_usd:,.2f}/hour, ${plan.cost_per_month_usd:,.0f}/month, "
        f"${plan.cost_per_million_tokens_usd:.3f} per 1M tokens (prompt + output) at "
        f"{plan.utilization:.0%} utilization; plan {plan.fingerprint()}"
    )
    if what_if:
        lines += ["", "What if (each pool alone, cheapest first):"]
        rows = []
        for r in what_if_rows(plan):
            if r["fits"]:
                rows.append([
                    str(r["pool"]), str(r["gpu"]), "yes" + (" (chosen)" if r["chosen"] else ""),
                    str(r["quantization"]), f"TP{r['tp']}xPP{r['pp']}", str(r["cMax"]),
                    f"{r['usableRPSPerReplica']:.2f}",
                    "{0:.2f}-{2:.2f}".format(*r["usableRPSBand"]),  # type: ignore[misc]
                    f"{r['costPerMillionTokensAtCapacity']:.3f}", "",
                ])  # fmt: skip
            else:
                rows.append([str(r["pool"]), str(r["gpu"]), "no", "", "", "", "", "", "",
                             str(r["why"])])  # fmt: skip
        lines.append(render_table(
            ["pool", "GPU", "fits", "quant", "layout", "C_max", "req/s/replica",
             "P10-P90 req/s", "$/1M tok @100%", "why not"], rows))  # fmt: skip
    return "\n".join(lines)
