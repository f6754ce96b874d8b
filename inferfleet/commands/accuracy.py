"""`inferfleet accuracy`: the replica model against measured vLLM serving benchmarks.

Every point of the benchmark set is asked of the same model `curve` uses; the absolute %
errors of output tok/s, TTFT and TPOT are tabled by source, GPU, model, TP and load regime,
with the median sign (positive throughput error = the model is optimistic, which sizes fleets
too small). JSON for CI and other tools; a PNG of measured against predicted for a few sweeps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inferfleet.errors import UsageError
from inferfleet.inputs import check_plot_path
from inferfleet.tables import render_table

if TYPE_CHECKING:
    from sizing.accuracy import ErrorStats, Scored

NAME = "accuracy"
HELP = "score the performance model against the measured vLLM benchmark set"
TABLE_GROUPINGS = ("all", "flagged", "source", "regime", "gpu", "tp", "model")
# Sweeps drawn in the PNG: the longest sweep of each (source, GPU) pair, at most this many.
PLOTTED_SWEEPS = 6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from inferfleet.benchmarks import DEFAULT_DIR

    parser.add_argument(
        "--benchmarks",
        metavar="DIR",
        type=Path,
        default=DEFAULT_DIR,
        help="folder with points.jsonl and configs/ (default: the shared benchmark set)",
    )
    parser.add_argument(
        "--by",
        default=",".join(TABLE_GROUPINGS),
        help=f"comma-separated groupings to table, of {', '.join(TABLE_GROUPINGS)}",
    )
    parser.add_argument("--output", choices=["text", "json"], default="text")
    parser.add_argument("--plot", metavar="FILE.png", help="measured vs predicted, a few sweeps")
    parser.add_argument(
        "--bands",
        action="store_true",
        help="print only the residual quantiles per regime (sizing/error_bands.py's table)",
    )


def _groupings(text: str) -> list[str]:
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [w for w in wanted if w not in TABLE_GROUPINGS]
    if unknown or not wanted:
        raise UsageError(f"--by: {', '.join(unknown) or text!r} not among {TABLE_GROUPINGS}")
    return wanted


def _stats_json(stats: ErrorStats) -> dict[str, float | int]:
    return {
        "count": stats.count,
        "median_abs_pct": round(stats.median_pct, 2),
        "p90_abs_pct": round(stats.p90_pct, 2),
        "max_abs_pct": round(stats.max_pct, 2),
        "median_signed_pct": round(stats.median_signed_pct, 2),
    }


def report_json(scored: list[Scored], groupings: list[str], skipped: list[str]) -> dict[str, Any]:
    from sizing.accuracy import band_coverage, error_table, residual_bands
    from sizing.error_bands import METRICS

    tables = {
        grouping: {
            metric: {
                name: _stats_json(s) for name, s in error_table(scored, grouping, metric).items()
            }
            for metric in METRICS
        }
        for grouping in groupings
    }
    points = [
        {
            "case_id": s.case.case_id,
            "regime": s.case.regime,
            **{f"{m}_measured": getattr(s.case.measured, m) for m in METRICS},
            **{f"{m}_predicted": round(getattr(s.predicted, m), 3) for m in METRICS},
        }
        for s in scored
    ]
    return {
        "tables": tables,
        "bands": residual_bands(scored),
        "band_coverage_p10_p90": {m: round(band_coverage(scored, m), 3) for m in METRICS},
        "points": points,
        "skipped": skipped,
    }


def format_tables(scored: list[Scored], groupings: list[str]) -> str:
    from sizing.accuracy import error_table
    from sizing.error_bands import METRICS

    header = ["group", "n"]
    for metric in METRICS:
        header += [f"{metric} med%", "p90%", "sign%"]
    blocks = []
    for grouping in groupings:
        per_metric = {m: error_table(scored, grouping, m) for m in METRICS}
        names = sorted({name for table in per_metric.values() for name in table})
        rows = []
        for name in names:
            counts = [per_metric[m][name].count for m in METRICS if name in per_metric[m]]
            row = [name, str(max(counts))]
            for metric in METRICS:
                s = per_metric[metric].get(name)
                row += (
                    [f"{s.median_pct:.1f}", f"{s.p90_pct:.1f}", f"{s.median_signed_pct:+.1f}"]
                    if s
                    else ["-", "-", "-"]
                )
            rows.append(row)
        blocks.append(f"by {grouping}:\n{render_table(header, rows)}")
    return "\n\n".join(blocks)


def plot_sweeps(scored: list[Scored], path: str) -> None:
    """Output tok/s and TPOT against load, measured (dots) and predicted (lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps: dict[str, list[Scored]] = {}
    for s in scored:
        sweeps.setdefault(s.case.sweep_id, []).append(s)
    longest: dict[tuple[str, str], str] = {}
    for sweep_id, items in sweeps.items():
        key = (items[0].case.source, items[0].case.gpu)
        if key not in longest or len(items) > len(sweeps[longest[key]]):
            longest[key] = sweep_id
    chosen = sorted(longest.values())[:PLOTTED_SWEEPS]
    fig, axes = plt.subplots(len(chosen), 2, figsize=(10, 2.6 * len(chosen)), squeeze=False)
    for row, sweep_id in zip(axes, chosen, strict=True):
        items = sorted(sweeps[sweep_id], key=lambda s: (s.case.input_len, s.case.concurrency))
        x = list(range(len(items)))
        labels = [f"{s.case.concurrency}" for s in items]
        for ax, metric, unit in ((row[0], "output_tok_per_s", "out tok/s"),
                                 (row[1], "tpot_ms", "TPOT ms")):  # fmt: skip
            ax.plot(x, [getattr(s.case.measured, metric) for s in items], "o", label="measured")
            ax.plot(x, [getattr(s.predicted, metric) for s in items], "-", label="predicted")
            ax.set_xticks(x, labels, fontsize=6)
            ax.set_ylabel(unit)
            ax.grid(True, alpha=0.3)
        row[0].set_title(sweep_id, fontsize=7, loc="left")
        row[0].legend(fontsize=6)
    axes[-1][0].set_xlabel("load (requests in flight)")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=90)
    except OSError as err:
        raise UsageError(f"--plot: cannot write {path!r}: {err}") from None
    finally:
        plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from inferfleet.benchmarks import load_cases
    from sizing.accuracy import band_coverage, residual_bands, score
    from sizing.error_bands import METRICS

    groupings = _groupings(args.by)
    if args.plot:
        check_plot_path(args.plot)
    cases, unreadable = load_cases(args.benchmarks)
    scored, unanswered = score(cases)
    skipped = unreadable + unanswered
    if args.bands:
        print(json.dumps(residual_bands(scored), indent=1))
        return 0
    if args.output == "json":
        json.dump(report_json(scored, groupings, skipped), sys.stdout, indent=1)
        print()
    else:
        print(format_tables(scored, groupings))
        coverage = ", ".join(f"{m} {band_coverage(scored, m):.0%}" for m in METRICS)
        print(f"\nmeasured inside the recorded p10-p90 band: {coverage}")
        print(f"\n{len(scored)} points scored; {len(skipped)} skipped:")
        for why in skipped:
            print(f"  {why}")
    if args.plot:
        plot_sweeps(scored, args.plot)
        if args.output == "text":
            print(f"plot written to {args.plot}")
    return 0
