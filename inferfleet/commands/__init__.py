"""Sub-commands of `inferfleet`; each module is discovered by `inferfleet.cli`."""
