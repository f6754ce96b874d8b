"""Act: write a pass's `Effects` to the cluster, in order. Nothing is decided here."""

from __future__ import annotations

from controllers.adapters.kube import KubeClient
from controllers.reconcile.decide import Annotate, Apply, Delete, Effects, PostEvent
from controllers.reconcile.runtime import Watcher

# The kinds whose watch events run passes (the handlers skip the echo of the operator's apply).
WATCHED_KINDS = frozenset({"Deployment", "Service", "PodDisruptionBudget"})


async def act(kube: KubeClient, watcher: Watcher, effects: Effects) -> bool:
    """Annotate, apply, delete, post Events, then patch status; True when status was written.

    Status goes last, so a pass cut short by an API error is redone in full by the next one
    (its observedGeneration and history are not yet advanced).
    """
    owner = effects.owner
    namespace = owner.namespace
    for write in effects.writes:
        if isinstance(write, Apply):
            applied = await kube.apply(write.manifest)
            version = applied.get("metadata", {}).get("resourceVersion")
            kind = write.manifest["kind"]
            if version and kind in WATCHED_KINDS:  # the watch's echo of it needs no pass
                watcher.applied[(namespace, kind, write.manifest["metadata"]["name"])] = version
        elif isinstance(write, Annotate):
            await kube.annotate(
                write.api_version, write.kind, namespace, write.name, write.annotations
            )
        elif isinstance(write, Delete):
            await kube.delete(write.api_version, write.kind, namespace, write.name)
        elif isinstance(write, PostEvent):
            await kube.post_event(owner, write.type, write.reason, write.message)
    if effects.memory is not None:
        watcher.memory[owner.uid] = effects.memory
    if effects.status_patch:
        await kube.patch_status(owner, effects.status_patch)
    return bool(effects.status_patch)
