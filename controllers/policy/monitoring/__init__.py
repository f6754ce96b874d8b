"""Monitoring policy: metrics snapshot shape, thresholds, findings, step-13 re-size."""
