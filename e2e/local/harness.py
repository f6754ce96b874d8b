"""The local stack as one context manager: API server, operator, Prometheus, pod runner.

Shared by `make demo` and the integration test, so the test exercises exactly what the demo
runs. Everything listens on 127.0.0.1 and everything is stopped on exit, in reverse order.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from controllers.api.v1alpha1 import API_VERSION, KIND
from controllers.reconcile.runtime import TIME_COMPRESSION_ENV
from e2e.local.pods import PodRunner
from inferfleet_testing.kube.harness import Cluster, Operator
from inferfleet_testing.prometheus import PrometheusServer

SCRAPE_INTERVAL = "1s"


def prometheus_config(targets_file: Path) -> dict[str, Any]:
    """Scrape whatever the pod runner lists in its file_sd file (Prometheus watches it)."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": "inferfleet-pods",
                "honor_labels": False,
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "5s"}],
            }
        ],
    }


class LocalHarness:
    """Start with `with LocalHarness(speedup=..., time_compression=...) as h:`.

    `speed_factor` makes every replica that many times as fast as `sizing.performance`
    predicts (the emulator's --speed-factor): the plan is then wrong by that factor.
    """

    def __init__(
        self,
        *,
        speedup: float,
        time_compression: float,
        speed_factor: float = 1.0,
        workdir: Path | None = None,
    ):
        self.speedup = speedup
        self.time_compression = time_compression
        self.speed_factor = speed_factor
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="inferfleet-local-")
        self.workdir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._stack = contextlib.ExitStack()
        self.cluster: Cluster
        self.operator: Operator
        self.prometheus: PrometheusServer
        self.pods: PodRunner

    def __enter__(self) -> LocalHarness:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def _start(self) -> None:
        stack = self._stack
        if self._tmp is not None:
            stack.callback(self._tmp.cleanup)
        self.cluster = Cluster(self.workdir)
        stack.callback(self.cluster.close)
        self._set_env("KUBECONFIG", str(self.cluster.kubeconfig))  # both clients read it
        self.pods = PodRunner(
            self.cluster.url,
            self.workdir,
            speedup=self.speedup,
            time_compression=self.time_compression,
            speed_factor=self.speed_factor,
        )
        stack.callback(self.pods.close)
        self.prometheus = PrometheusServer(scrape_interval=SCRAPE_INTERVAL)
        self.prometheus.config_path.write_text(
            yaml.safe_dump(prometheus_config(self.pods.targets_file))
        )
        stack.callback(self.prometheus.close)
        self.prometheus.start()
        self._set_env(TIME_COMPRESSION_ENV, f"{self.time_compression:g}")
        self.operator = Operator()
        stack.callback(self.operator.stop)

    def _set_env(self, name: str, value: str) -> None:
        """Set an operator setting for this harness's lifetime (read at operator startup)."""
        saved = os.environ.get(name)
        os.environ[name] = value

        def restore() -> None:
            if saved is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = saved

        self._stack.callback(restore)

    def __exit__(self, *_: object) -> None:
        self._stack.close()

    def check(self) -> None:
        """Raise if the operator or the pod runner died while the run goes on."""
        if self.operator.errors:
            raise RuntimeError(f"the operator failed: {self.operator.errors[-1]!r}")
        self.pods.check()

    # --- like kubectl ------------------------------------------------------------------------

    def apply_fleet(self, fleet: dict[str, Any]) -> dict[str, Any]:
        return self.cluster.create(fleet)

    def fleet(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.cluster.get(API_VERSION, KIND, namespace, name)

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """Events about the fleet, oldest first (the API server keeps creation order)."""
        return [
            e
            for e in self.cluster.objects("Event")
            if e.get("involvedObject", {}).get("name") == name
            and e["metadata"].get("namespace") == namespace
        ]
