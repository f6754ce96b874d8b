"""Kopf entry point: `kopf run --all-namespaces operator/main.py`.

Not a package on purpose (it would shadow the standard library's `operator`). The handlers live
in `controllers.reconcile.handlers`; importing them registers them with Kopf.
"""

import controllers.reconcile.handlers  # noqa: F401
