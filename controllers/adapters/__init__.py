"""I/O: the Kubernetes API, Prometheus, the vLLM load client, the operator's own metrics."""
