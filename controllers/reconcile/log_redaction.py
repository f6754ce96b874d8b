"""Secrets kept out of the operator's logs, Kopf's included.

The API server refuses a secret flag in `extraArgs`, but a cluster without the CRD's CEL rules
(or an older CRD) still hands such a spec to Kopf, whose debug log prints bodies and diffs, and
an exception may quote the spec. A filter on every handler rewrites each record once, before
any formatter sees it.
"""

from __future__ import annotations

import logging

from controllers.api.engine_args import redact


class RedactSecrets(logging.Filter):
    """Replace `--*token*` / `--api-key` values with `<redacted>` in message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a malformed record: logging reports it when it formats it
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(root: logging.Logger | None = None) -> None:
    """Add the filter to every handler of the root logger and of the loggers that exist."""
    root = root or logging.getLogger()
    loggers = [root, *(
        logger for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    )]  # fmt: skip
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactSecrets) for f in handler.filters):
                handler.addFilter(RedactSecrets())
