"""A real Prometheus for tests, and a small exposition server that feeds it known values.

`PrometheusServer` runs the Debian `prometheus` binary on 127.0.0.1 with a free port and a
temporary data dir, scraping the targets given at 1 s; it always stops in `close()`.
`ExpositionServer` serves text in the Prometheus format produced by a callable of the elapsed
time, so counters grow at exact rates and histograms keep exact bucket shares: the adapter's
answers can then be checked against known numbers. `backfill_openmetrics` writes history.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
requires_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="prometheus/promtool not installed; run `bash scripts/install-tools.sh`",
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.25) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(poll_s)
    raise TimeoutError(f"waited {timeout_s:g}s for {what}")


# --- exposition ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Histogram:
    """Cumulative shares per upper bound (the last bound is +Inf, share 1) and an event rate."""

    bounds: tuple[float, ...]
    cumulative_shares: tuple[float, ...]
    events_per_s: float
    mean: float


@dataclass(frozen=True)
class PodProfile:
    """What one pod exposes: gauges as they are, counters and histograms growing at a rate."""

    labels: Mapping[str, str] = field(default_factory=dict)
    gauges: Mapping[str, float] = field(default_factory=dict)
    counter_rates: Mapping[str, float] = field(default_factory=dict)
    histograms: Mapping[str, Histogram] = field(default_factory=dict)


def _labels(labels: Mapping[str, str], extra: str = "") -> str:
    parts = [f'{k}="{v}"' for k, v in sorted(labels.items())]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def render_exposition(pods: Sequence[PodProfile], elapsed_s: float) -> str:
    """Text format 0.0.4 for all pods at `elapsed_s` after the server started."""
    lines: list[str] = []
    for pod in pods:
        for name, value in pod.gauges.items():
            lines.append(f"{name}{_labels(pod.labels)} {value!r}")
        for name, rate in pod.counter_rates.items():
            lines.append(f"{name}{_labels(pod.labels)} {rate * elapsed_s!r}")
        for name, hist in pod.histograms.items():
            count = hist.events_per_s * elapsed_s
            for bound, share in zip(hist.bounds, hist.cumulative_shares, strict=True):
                le = "+Inf" if bound == float("inf") else repr(bound)
                bucket_labels = _labels(pod.labels, f'le="{le}"')
                lines.append(f"{name}_bucket{bucket_labels} {share * count!r}")
            lines.append(f"{name}_count{_labels(pod.labels)} {count!r}")
            lines.append(f"{name}_sum{_labels(pod.labels)} {hist.mean * count!r}")
    return "\n".join(lines) + "\n"


class ExpositionServer:
    """HTTP server on 127.0.0.1 whose /metrics is `render(elapsed_s)`; swap it any time."""

    def __init__(self, render: Callable[[float], str]) -> None:
        self.render = render
        self._start = time.monotonic()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = outer.render(time.monotonic() - outer._start).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_pods(pods: Sequence[PodProfile]) -> ExpositionServer:
    return ExpositionServer(lambda elapsed_s: render_exposition(pods, elapsed_s))


# --- Prometheus -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A scrape target; `labels` are attached the way the ServiceMonitor's relabeling would."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)
    honor_labels: bool = False


def _config(targets: Sequence[Target], rule_files: Sequence[Path], interval: str) -> dict:
    jobs = [
        {
            "job_name": f"target-{i}",
            "honor_labels": t.honor_labels,
            "static_configs": [{"targets": [t.address], "labels": dict(t.labels)}],
        }
        for i, t in enumerate(targets)
    ]
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": jobs,
    }


class PrometheusServer:
    """The real server, one per test module; `stop()`/`start()` keep port and data."""

    def __init__(
        self,
        targets: Sequence[Target] = (),
        rule_files: Sequence[Path] = (),
        scrape_interval: str = "1s",
        data_dir: Path | None = None,
    ) -> None:
        if PROMETHEUS is None:
            raise RuntimeError("the prometheus binary is not installed")
        self._tmp = Path(tempfile.mkdtemp(prefix="inferfleet-prom-"))
        self.data_dir = data_dir or self._tmp / "data"
        self.config_path = self._tmp / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(_config(targets, rule_files, scrape_interval)))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen | None = None
        self._log = self._tmp / "prometheus.log"

    def start(self, timeout_s: float = 30.0) -> PrometheusServer:
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.data_dir}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=30d",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._ready, timeout_s, f"Prometheus ready on {self.url} (log {self._log})")
        return self

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"prometheus exited: {self._log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, promql: str) -> list[dict]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5.0)
        answer.raise_for_status()
        return answer.json()["data"]["result"]

    def wait_for_series(self, promql: str, count: int = 1, timeout_s: float = 60.0) -> None:
        """Until `promql` returns at least `count` series (the first scrapes have landed)."""
        wait_for(lambda: len(self.query(promql)) >= count, timeout_s, f"{count} series of {promql}")

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)


@pytest.fixture
def prometheus_server() -> Iterator[Callable[..., PrometheusServer]]:
    """Factory fixture: `prometheus_server(targets)` starts a Prometheus scraping them at 1 s and
    returns once `wait_for` has `count` series; every server started is stopped after the test.
    Import it into a test module (or a conftest) to use it."""
    started: list[PrometheusServer] = []

    def start(
        targets: Sequence[Target] = (),
        *,
        rule_files: Sequence[Path] = (),
        data_dir: Path | None = None,
        wait_for: str | None = "up == 1",
        count: int | None = None,
    ) -> PrometheusServer:
        prom = PrometheusServer(targets, rule_files, data_dir=data_dir)
        started.append(prom)
        prom.start()
        if targets and wait_for:
            prom.wait_for_series(wait_for, len(targets) if count is None else count)
        return prom

    yield start
    for prom in started:
        prom.close()


def backfill_openmetrics(text: str, data_dir: Path) -> None:
    """Write OpenMetrics text (ending in `# EOF`) as TSDB blocks into a Prometheus data dir."""
    if PROMTOOL is None:
        raise RuntimeError("the promtool binary is not installed")
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".om", delete=False) as handle:
        handle.write(text)
        source = Path(handle.name)
    try:
        subprocess.run(
            [
                str(PROMTOOL),
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                str(source),
                str(data_dir),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    finally:
        source.unlink()


def daily_cycle_openmetrics(
    labels: Mapping[str, str],
    start_s: int,
    days: int,
    step_s: int,
    rps: Callable[[float], float],
    metric: str = "vllm:request_success",
) -> str:
    """A counter (`<metric>_total`) whose rate follows `rps(t)`: OpenMetrics for backfill."""
    lines = [f"# TYPE {metric} counter"]
    total = 0.0
    label_text = _labels(labels)
    for t in range(start_s, start_s + days * 86400 + 1, step_s):
        lines.append(f"{metric}_total{label_text} {total!r} {t}")
        total += rps(float(t)) * step_s
    return "\n".join(lines) + "\n# EOF\n"


# --- vLLM + DCGM pods with chosen numbers -------------------------------------------------

INF = float("inf")
LATENCY_BOUNDS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, INF)
TOKEN_BOUNDS = (128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, INF)


def shares(bounds: Sequence[float], points: Mapping[float, float]) -> tuple[float, ...]:
    """Cumulative shares from {bound: share at or below it}; 0 before the first, 1 at +Inf."""
    out, current = [], 0.0
    for bound in bounds:
        current = points.get(bound, 1.0 if bound == INF else current)
        out.append(current)
    return tuple(out)


@dataclass(frozen=True)
class VllmLoad:
    """Per-pod numbers to expose (vLLM names as of v0.10+, DCGM exporter names)."""

    running: float = 8.0
    waiting: float = 0.0
    kv_usage: float = 0.6
    rps: float = 2.0
    preemptions_per_s: float = 0.0
    prompt_tok_per_s: float = 1600.0
    generation_tok_per_s: float = 400.0
    prefix_hit_share: float = 0.5
    # Cumulative shares at chosen bounds, reaching 1.0 at a finite bound: a quantile that sat
    # exactly on a share followed by a flat run to +Inf would flip with float rounding.
    ttft_points: Mapping[float, float] = field(
        default_factory=lambda: {0.1: 0.4, 0.25: 0.98, 0.5: 1.0}
    )
    itl_points: Mapping[float, float] = field(
        default_factory=lambda: {0.025: 0.4, 0.05: 0.98, 0.1: 1.0}
    )
    prompt_points: Mapping[float, float] = field(
        default_factory=lambda: {512.0: 0.4, 2048.0: 0.9, 4096.0: 0.98, 8192.0: 1.0}
    )
    output_points: Mapping[float, float] = field(
        default_factory=lambda: {128.0: 0.4, 512.0: 0.9, 1024.0: 0.98, 2048.0: 1.0}
    )
    gpu_util_percent: float = 75.0
    sm_active: float = 0.7
    fb_used_mib: float = 69000.0
    fb_free_mib: float = 12000.0


def vllm_pod(labels: Mapping[str, str], load: VllmLoad) -> PodProfile:
    def hist(bounds, points, rate, mean) -> Histogram:
        return Histogram(bounds, shares(bounds, points), rate, mean)

    tokens_per_s = 1000.0 * load.rps
    return PodProfile(
        labels=labels,
        gauges={
            "vllm:num_requests_running": load.running,
            "vllm:num_requests_waiting": load.waiting,
            "vllm:kv_cache_usage_perc": load.kv_usage,
            "DCGM_FI_DEV_GPU_UTIL": load.gpu_util_percent,
            "DCGM_FI_PROF_SM_ACTIVE": load.sm_active,
            "DCGM_FI_DEV_FB_USED": load.fb_used_mib,
            "DCGM_FI_DEV_FB_FREE": load.fb_free_mib,
        },
        counter_rates={
            "vllm:request_success_total": load.rps,
            "vllm:num_preemptions_total": load.preemptions_per_s,
            "vllm:prompt_tokens_total": load.prompt_tok_per_s,
            "vllm:generation_tokens_total": load.generation_tok_per_s,
            "vllm:prefix_cache_queries_total": tokens_per_s,
            "vllm:prefix_cache_hits_total": tokens_per_s * load.prefix_hit_share,
        },
        histograms={
            "vllm:time_to_first_token_seconds": hist(
                LATENCY_BOUNDS_S, load.ttft_points, load.rps, 0.1
            ),
            "vllm:inter_token_latency_seconds": hist(
                LATENCY_BOUNDS_S, load.itl_points, load.generation_tok_per_s, 0.02
            ),
            "vllm:request_prompt_tokens": hist(TOKEN_BOUNDS, load.prompt_points, load.rps, 800.0),
            "vllm:request_generation_tokens": hist(
                TOKEN_BOUNDS, load.output_points, load.rps, 200.0
            ),
        },
    )
