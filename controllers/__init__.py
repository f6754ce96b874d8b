"""Kubernetes-facing layers: API types and pure policy, adapters, and Kopf handlers."""
