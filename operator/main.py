"""Kopf entry point: `kopf run --all-namespaces operator/main.py`.

Not a package on purpose (it would shadow the standard library's `operator`). The handlers live
in `controllers.handlers`; importing them registers them with Kopf.
"""

import controllers.handlers  # noqa: F401
