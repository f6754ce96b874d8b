"""Errors raised by the sizing core. Each message names the input and the numbers behind it.

`field` carries the path of the offending input when one is known (`config.json:head_dim`,
`workload.peak_rps`), so a caller can put it in a condition or map it to its own field names.
"""


class SizingError(ValueError):
    """Base class: the caller gave input the sizing core cannot use."""

    reason = "InvalidSpec"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidInput(SizingError):
    """A field is missing, malformed or out of range."""

    reason = "InvalidSpec"


class UnknownGPU(SizingError):
    """The GPU name is not in the catalog."""

    reason = "InvalidSpec"


class ModelDoesNotFit(SizingError):
    """Weights plus the minimum KV cache do not fit even at the largest allowed parallelism."""

    reason = "ModelDoesNotFit"


class NoPoolFits(SizingError):
    """No allowed GPU pool can serve the model within its GPU limit and the SLO."""

    reason = "NoPoolFits"
