"""No secret-flag value reaches a condition, an Event or a log line."""

from __future__ import annotations

import io
import logging

from controllers.api.conditions import set_condition
from controllers.reconcile import log_redaction

SECRET = "hf_SuperSecretValue123"


def test_condition_messages_are_redacted_and_stay_equal_on_the_next_pass():
    first = set_condition([], "Sized", "False", "InvalidSpec", f"bad: --hf-token={SECRET}",
                          generation=1, now_s=0.0)  # fmt: skip
    again = set_condition(first, "Sized", "False", "InvalidSpec", first[0].message,
                          generation=1, now_s=60.0)  # fmt: skip
    assert SECRET not in first[0].message and "--hf-token=<redacted>" in first[0].message
    assert again == first  # redaction is idempotent: no status write on every pass


def test_log_records_and_tracebacks_are_redacted_on_every_handler():
    stream = io.StringIO()
    logger = logging.getLogger("test.redaction")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        log_redaction.install()
        log_redaction.install()  # twice adds it once
        assert sum(isinstance(f, log_redaction.RedactSecrets) for f in handler.filters) == 1
        logger.error("spec %s", {"extraArgs": ["--api-key", SECRET]})
        try:
            raise ValueError(f"--hf-token {SECRET} refused")
        except ValueError:
            logger.exception("pass failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert SECRET not in text
    assert text.count("<redacted>") >= 2 and "pass failed" in text and "ValueError" in text
