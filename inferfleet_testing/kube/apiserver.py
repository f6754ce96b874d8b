"""KMock's Kubernetes emulator with the API-server semantics Kopf and the operator rely on.

KMock 0.8 serves discovery, list, watch and get from its object store; what it lacks is done
here, for every write: uid, resourceVersion, generation and creationTimestamp; 201 on create;
merge-patch, JSON-patch (a failed `test` is 422, not 500) and server-side apply (create when
absent, merge when present; field ownership is not tracked); typed lists; `/status` kept
apart from the main object; finalizers and deletionTimestamp; and garbage collection of
objects whose controller owner is gone. Every write is recorded, so a test can assert that a
reconcile wrote nothing, and a fault can be injected for the next matching write.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
import yaml

from inferfleet_testing.kube.selectors import SelectorError, selector_match

WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}
Validator = Callable[[dict[str, Any]], str | None]


@dataclass(frozen=True)
class Write:
    """One mutating request as the server saw it."""

    method: str
    path: str
    content_type: str
    body: Any
    status: int

    @property
    def is_status(self) -> bool:
        return self.path.endswith("/status")


@dataclass
class Fault:
    """Answer the next `times` writes (or GETs of one object) whose method and path match with
    `status`."""

    method: str
    path_suffix: str
    status: int
    times: int = 1
    hits: list[str] = field(default_factory=list)


def _now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (null removes a key; lists are replaced)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _resource(request: kmock.Request) -> kmock.resource:
    """The resource a request is for; `_handle` passes on only requests that name one."""
    if request.resource is None or request.resource.plural is None:
        raise kmock.KubernetesError(status=404, message=f"{request.url.path} is not a resource")
    return request.resource


def _plural(request: kmock.Request) -> str:
    return str(_resource(request).plural)


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    """The emulator with real write semantics; reads stay KMock's own."""

    writes: list[Write] = attrs.field(factory=list, init=False)
    paths: list[str] = attrs.field(factory=list, init=False)  # every request, reads included
    faults: list[Fault] = attrs.field(factory=list, init=False)
    status_subresources: set[str] = attrs.field(factory=set, init=False)
    kinds: dict[str, str] = attrs.field(factory=dict, init=False)  # plural -> kind
    # plural -> a schema check of the object a write would store: the reason it is invalid, or
    # None. As a real server checks custom resources against their CRD's schema (422 Invalid).
    validators: dict[str, Validator] = attrs.field(factory=dict, init=False)
    _versions: Any = attrs.field(factory=lambda: itertools.count(1000), init=False)

    def declare(
        self,
        group_version_plural: str,
        kind: str,
        *,
        namespaced: bool = True,
        status: bool = False,
        short_names: tuple[str, ...] = (),
    ) -> None:
        """Make a resource discoverable (Kopf and kubectl read discovery first)."""
        info = self.resources[group_version_plural]
        info.kind = kind
        info.singular = kind.lower()
        info.shortnames = set(short_names)
        info.namespaced = namespaced
        self.kinds[group_version_plural.rsplit("/", 1)[-1]] = kind
        info.verbs = {"get", "list", "watch", "create", "patch", "update", "delete"}
        if status:
            info.subresources = {"status"}
            self.status_subresources.add(group_version_plural.rsplit("/", 1)[-1])

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        method = str(request.method.value).upper()
        self.paths.append(f"{method} {request.url.path}")
        if request.resource is None:
            return await super()._handle(request)
        served = request.resource.plural in self.kinds
        if served and request.action in (kmock.action.FETCH, kmock.action.LIST):
            # Served here: KMock's generic request matching costs ~0.1 s per read at this size.
            async with self._lock:
                status, body = self._read(request)
            return aiohttp.web.json_response(body, status=status)
        if method not in WRITE_METHODS:
            return await super()._handle(request)
        async with self._lock:
            status, body = await self._write(request, method)
            self.writes.append(
                Write(
                    method,
                    request.url.path,
                    request.headers.get("Content-Type", ""),
                    request.data,
                    status,
                )
            )
        return aiohttp.web.json_response(body, status=status)

    def _read(self, request: kmock.Request) -> tuple[int, Any]:
        if request.action == kmock.action.FETCH:
            faulted = self._faulted(request, "GET")
            if faulted is not None:
                return faulted
            found = self._live(self._key(request))
            if found is None:
                return 404, self._status_body(404, f"{request.url.path} not found")
            return 200, found
        resource = _resource(request)
        try:
            selected = selector_match(request.params)
        except SelectorError as err:
            return 400, self._status_body(400, str(err))
        items = [
            copy.deepcopy(stored.raw)
            for (res, namespace, _), stored in self._objects.items()
            if res == resource
            and not stored.deleted
            and (request.namespace is None or namespace == request.namespace)
            and selected(stored.raw)
        ]
        group_version = f"{resource.group}/{resource.version}".lstrip("/")
        return 200, {
            "apiVersion": group_version,
            "kind": f"{self.kinds[_plural(request)]}List",
            "metadata": {"resourceVersion": str(next(self._versions))},
            "items": items,
        }

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        """KMock's watch (the objects there now as ADDED, then every change), narrowed by the
        namespace and the selectors as a real server narrows it."""
        yield b""  # the headers go out before the first event, as KMock's own watch does
        try:
            selected = selector_match(request.params)
        except SelectorError as err:
            yield {"type": "ERROR", "object": self._status_body(400, str(err))}
            return

        def wanted(obj: dict[str, Any]) -> bool:
            namespace = obj.get("metadata", {}).get("namespace")
            return (request.namespace in (None, namespace)) and selected(obj)

        async with self._lock:
            present = [
                stored.raw
                for (res, _, _), stored in self._objects.items()
                if res == request.resource and not stored.deleted and wanted(stored.raw)
            ]
        for obj in present:
            yield {"type": "ADDED", "object": obj}
        async for event in self._buses[_resource(request)]:
            if wanted(event.get("object") or {}):
                yield event

    # --- writes --------------------------------------------------------------------------------

    def _faulted(self, request: kmock.Request, method: str) -> tuple[int, Any] | None:
        for fault in self.faults:
            if (
                fault.times > 0
                and fault.method == method
                and request.url.path.endswith(fault.path_suffix)
            ):
                fault.times -= 1
                fault.hits.append(request.url.path)
                return fault.status, self._status_body(fault.status, "injected by the test")
        return None

    async def _write(self, request: kmock.Request, method: str) -> tuple[int, Any]:
        faulted = self._faulted(request, method)
        if faulted is not None:
            return faulted
        try:
            if method == "POST":
                return 201, await self._create(request, self._body(request))
            if method == "DELETE":
                return 200, await self._delete(request)
            return await self._patch(request, method)
        except kmock.KubernetesError as err:
            return err.status, self._status_body(err.status, err.message or "")

    @staticmethod
    def _status_body(code: int, message: str) -> dict[str, Any]:
        reason = {400: "BadRequest", 404: "NotFound", 409: "Conflict", 422: "Invalid"}.get(
            code, "InternalError"
        )
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "code": code,
            "reason": reason,
            "message": message,
        }

    @staticmethod
    def _body(request: kmock.Request) -> Any:
        if request.data is not None:
            return copy.deepcopy(request.data)
        return yaml.safe_load(request.text) if request.text else None

    def _key(self, request: kmock.Request, name: str | None = None) -> tuple[Any, Any, Any]:
        return (request.resource, request.namespace, name or request.name)

    async def _publish(self, resource: Any, kind: str, obj: dict[str, Any]) -> None:
        await self._buses[resource].put({"type": kind, "object": obj})

    def _live(self, key: tuple[Any, Any, Any]) -> dict[str, Any] | None:
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].raw)

    def _store(self, key: tuple[Any, Any, Any], obj: dict[str, Any]) -> None:
        if key in self._objects:
            self._objects[key].history.append(obj)
        else:
            self._objects[key] = obj

    async def _create(self, request: kmock.Request, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if request.namespace:
            meta["namespace"] = request.namespace
        key = self._key(request, meta.get("name"))
        if self._live(key) is not None:
            raise kmock.KubernetesError(
                status=409, message=f"{_plural(request)} {meta['name']} already exists"
            )
        meta.update(
            uid=str(uuid.uuid4()),
            resourceVersion=str(next(self._versions)),
            generation=1,
            creationTimestamp=_now(),
        )
        if _plural(request) in self.status_subresources:
            obj.pop("status", None)
        self._validate(request, obj)
        self._store(key, obj)
        await self._publish(key[0], "ADDED", obj)
        return obj

    async def _patch(self, request: kmock.Request, method: str) -> tuple[int, Any]:
        key = self._key(request)
        old = self._live(key)
        content_type = request.headers.get("Content-Type", "").split(";")[0]
        body = self._body(request)
        if old is None:
            if content_type == "application/apply-patch+yaml":
                return 201, await self._create(request, body)
            raise kmock.KubernetesError(status=404, message=f"{request.url.path} not found")
        if method == "PUT" or content_type == "application/json-patch+json":
            try:
                new = body if method == "PUT" else jsonpatch.apply_patch(old, body)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
                raise kmock.KubernetesError(status=422, message=str(err)) from None
        else:  # merge, strategic merge (approximated as merge) and server-side apply
            new = merge_patch(old, body)
        new = self._keep_apart(request, old, new)
        if new == old:
            return 200, old
        self._validate(request, new)
        new["metadata"]["resourceVersion"] = str(next(self._versions))
        if _spec_part(new) != _spec_part(old):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._objects[key].delete()
            await self._publish(key[0], "DELETED", new)
            await self._collect_garbage()
            return 200, new
        self._store(key, new)
        await self._publish(key[0], "MODIFIED", new)
        return 200, new

    def _validate(self, request: kmock.Request, obj: dict[str, Any]) -> None:
        validator = self.validators.get(_plural(request))
        reason = validator(obj) if validator is not None else None
        if reason is not None:
            raise kmock.KubernetesError(status=422, message=reason)

    def _keep_apart(
        self, request: kmock.Request, old: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
        """Identity fields never change; status and the rest change only through their paths."""
        for field_name in ("uid", "creationTimestamp", "name", "namespace", "generation"):
            if field_name in old["metadata"]:
                new.setdefault("metadata", {})[field_name] = old["metadata"][field_name]
        if _plural(request) not in self.status_subresources:
            return new
        if request.subresource == "status":
            kept = copy.deepcopy(old)
            if "status" in new:
                kept["status"] = new["status"]
            else:
                kept.pop("status", None)
            return kept
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
        return new

    async def _delete(self, request: kmock.Request) -> dict[str, Any]:
        key = self._key(request)
        old = self._live(key)
        if old is None:
            raise kmock.KubernetesError(status=404, message=f"{request.url.path} not found")
        if old["metadata"].get("finalizers"):
            if not old["metadata"].get("deletionTimestamp"):
                old["metadata"]["deletionTimestamp"] = _now()
                old["metadata"]["resourceVersion"] = str(next(self._versions))
                self._store(key, old)
                await self._publish(key[0], "MODIFIED", old)
            return old
        self._objects[key].delete()
        await self._publish(key[0], "DELETED", old)
        await self._collect_garbage()
        return old

    async def _collect_garbage(self) -> None:
        """Delete objects whose owners are all gone, until nothing more goes (cascades)."""
        while True:
            live = {key: stored.raw for key, stored in self._objects.items() if not stored.deleted}
            uids = {obj.get("metadata", {}).get("uid") for obj in live.values()}
            orphans = [
                key
                for key, obj in live.items()
                if (owners := obj.get("metadata", {}).get("ownerReferences"))
                and not any(o.get("uid") in uids for o in owners)
            ]
            if not orphans:
                return
            for key in orphans:
                obj = copy.deepcopy(live[key])
                self._objects[key].delete()
                await self._publish(key[0], "DELETED", obj)

    # --- for tests --------------------------------------------------------------------------

    def snapshot(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every live object, or every one of `kind` (deep copies of those only)."""
        return [
            copy.deepcopy(stored.raw)
            for (resource, _, _), stored in self._objects.items()
            if not stored.deleted and kind in (None, self.kinds.get(str(resource.plural)))
        ]

    def names_where(self, kind: str, check: Callable[[dict[str, Any]], bool]) -> set[str]:
        """Names of the live objects of `kind` for which `check` (which must not change them)
        is true."""
        return {
            stored.raw["metadata"]["name"]
            for (resource, _, _), stored in self._objects.items()
            if not stored.deleted
            and self.kinds.get(str(resource.plural)) == kind
            and check(stored.raw)
        }

    def dumps(self) -> str:
        return json.dumps(self.snapshot(), indent=1, sort_keys=True)
