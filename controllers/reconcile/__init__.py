"""One reconcile pass and its Kopf wiring."""
