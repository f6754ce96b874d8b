"""Which hosts the operator may send a request to, from the host patterns its chart lists.

The operator sends requests from inside the cluster to URLs a fleet names (prometheusURL) or
a server redirects it to (the Hub's storage): without a list, whoever writes a fleet, or runs
a mirror, could have it probe Services no one meant it to reach.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from urllib.parse import urlsplit


def host_allowed(url: str, patterns: Iterable[str] | None) -> bool:
    """True when the URL's host matches one pattern (`prometheus.monitoring.svc`,
    `*.monitoring.svc`, `127.0.0.1`); None (no allow-list configured) allows every host."""
    if patterns is None:
        return True
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return any(fnmatch.fnmatchcase(host, p.lower().rstrip(".")) for p in patterns if p)
