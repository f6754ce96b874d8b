"""Scaling policy: forecasters, warm spare, schedules, the per-tick decision, replay."""
