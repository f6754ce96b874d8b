"""The Kubernetes API as the operator uses it: read, server-side apply, status, Events.

An adapter, deliberately small: plain JSON over aiohttp (already Kopf's HTTP client), with the
credentials Kopf's login reads (in-cluster service account or kubeconfig). Every
call here has a matching rule in `controllers.reconcile.rbac`. Errors come back typed so
handlers can choose between "retry later" (`Conflict`, `Unavailable`) and "tell the user"
(`Rejected`).
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import kopf

from controllers.api.engine_args import redact
from controllers.api.v1alpha1 import API_VERSION, KIND, PLURAL

FIELD_MANAGER = "inferfleet"
_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"
_PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "Pod": "pods",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Event": "events",
    "ScaledObject": "scaledobjects",
    KIND: PLURAL,
}


class KubeError(Exception):
    """A failed API call, with the HTTP status and the API server's own message."""

    def __init__(self, status: int, message: str, *, method: str, path: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status
        self.api_message = message


class Conflict(KubeError):
    """409: someone else changed the object first; re-read and try again."""


class Unavailable(KubeError):
    """429, 5xx or no connection: the API server may recover; retry with backoff."""


class Rejected(KubeError):
    """Other 4xx: the request itself is wrong or forbidden; retrying will not help."""


@dataclass(frozen=True)
class Owner:
    """The fleet that owns what the operator creates, for ownerReferences and Events."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    """URL path of a namespaced object (or its collection when `name` is None)."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{_PLURALS[kind]}"
    return f"{path}/{name}" if name else path


def owned(manifest: Mapping[str, Any], owner: Owner) -> dict[str, Any]:
    """The manifest with the fleet as its controller, so deleting the fleet collects it."""
    metadata = {**manifest["metadata"], "ownerReferences": [owner.reference()]}
    return {**manifest, "metadata": metadata}


SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
# A projected service-account token is rotated by the kubelet; re-read it this often.
TOKEN_REREAD_S = 60.0


def connection_info() -> kopf.ConnectionInfo:
    """The in-cluster service account when present, else $KUBECONFIG or ~/.kube/config.

    Kopf's own login functions read them, so the operator's client and its watches use the same
    credentials, without the official client library: it costs the operator ~8 MiB of resident
    memory (Kopf imports it whenever it is installed). A kubeconfig is read as Kopf
    reads it: tokens, client certificates, basic auth; exec plugins are not run.
    """
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        raise kopf.LoginError("no service-account token and no kubeconfig ($KUBECONFIG)")
    return info


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    return info.as_ssl_context() if info.server.startswith("https") else False


ObjectKey = tuple[str, str]  # (kind, name) of an object in the fleet's namespace


class OwnedObjects(Protocol):
    """What a fleet owns as the operator's watches last saw it (no API request per pass)."""

    def owned_by(self, owner: Owner) -> Mapping[ObjectKey, dict[str, Any]]: ...

    def pods_of(self, owner: Owner) -> tuple[Mapping[str, Any], ...]: ...

    def calibration(self, namespace: str, name: str) -> Mapping[str, str] | None:
        """The data of a calibration ConfigMap as watched, or None when there is none."""
        ...


class KubeClient(Protocol):
    """The calls a reconcile makes: reads in observe, writes in act."""

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None: ...

    async def read_config_map_key(self, namespace: str, name: str, key: str) -> str | None: ...

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str | None: ...

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]: ...

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None: ...

    async def annotate(
        self, api_version: str, kind: str, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> None: ...

    async def patch_status(self, owner: Owner, status: Mapping[str, Any]) -> dict[str, Any]: ...

    async def post_event(
        self, owner: Owner, event_type: str, reason: str, message: str
    ) -> None: ...


class Kube:
    """One API client per operator process (aiohttp keeps the connections warm)."""

    def __init__(self, info: kopf.ConnectionInfo, token_file: Path | None = None) -> None:
        self._token_file = token_file  # re-read now and then: the kubelet rotates it
        self._auth = info.as_http_headers()
        self._auth_read_s = time.monotonic()
        self._base = info.server.rstrip("/")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=_ssl_context(info)),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    @classmethod
    def from_environment(cls) -> Kube:
        """In-cluster service account when present, else $KUBECONFIG or ~/.kube/config."""
        info = connection_info()
        in_cluster = SERVICE_ACCOUNT_TOKEN.exists() and info.token is not None
        return cls(info, SERVICE_ACCOUNT_TOKEN if in_cluster else None)

    async def close(self) -> None:
        await self._session.close()

    @property
    def closed(self) -> bool:
        """True once `close` ran: the operator is stopping and this client will not reopen."""
        return self._session.closed

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        return headers | self._authorization()

    def _authorization(self) -> dict[str, str]:
        now_s = time.monotonic()
        if self._token_file is not None and now_s - self._auth_read_s >= TOKEN_REREAD_S:
            token = self._token_file.read_text().strip()
            self._auth = {"Authorization": f"Bearer {token}"} if token else {}
            self._auth_read_s = now_s
        return self._auth

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body)
        if self.closed:
            raise Unavailable(0, "the client is closed: the operator is stopping", method=method,
                              path=path)  # fmt: skip
        try:
            async with self._session.request(
                method,
                self._base + path,
                data=data,
                params=params,
                headers=self._headers(content_type if body is not None else None),
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as err:
            raise Unavailable(0, f"{type(err).__name__}: {err}", method=method, path=path) from err
        if status < 300:
            return json.loads(text) if text else {}
        try:
            message = json.loads(text).get("message", text)
        except ValueError:
            message = text
        kind = (
            Conflict
            if status == 409
            else Unavailable
            if status == 429 or status >= 500
            else Rejected
        )
        raise kind(status, str(message)[:500], method=method, path=path)

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        """The object, or None when it does not exist."""
        try:
            return await self._call("GET", object_path(api_version, kind, namespace, name))
        except Rejected as err:
            if err.status == 404:
                return None
            raise

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply as field manager `inferfleet`, taking over conflicting fields."""
        meta = manifest["metadata"]
        path = object_path(
            manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"]
        )
        return await self._call(
            "PATCH",
            path,
            body=manifest,
            content_type=_APPLY,
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
        )

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        try:
            await self._call("DELETE", object_path(api_version, kind, namespace, name))
        except Rejected as err:
            if err.status != 404:
                raise

    async def annotate(
        self, api_version: str, kind: str, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> None:
        """Merge annotations into an object; one that is gone already needs none."""
        path = object_path(api_version, kind, namespace, name)
        body = {"metadata": {"annotations": dict(annotations)}}
        try:
            await self._call("PATCH", path, body=body, content_type=_MERGE)
        except Rejected as err:
            if err.status != 404:
                raise

    async def patch_status(self, owner: Owner, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the fleet's status subresource (keys set to None are removed)."""
        path = object_path(API_VERSION, KIND, owner.namespace, owner.name) + "/status"
        return await self._call("PATCH", path, body={"status": status}, content_type=_MERGE)

    async def read_config_map_key(self, namespace: str, name: str, key: str) -> str | None:
        """A ConfigMap's data value, or None when the ConfigMap or the key is missing."""
        found = await self.get("v1", "ConfigMap", namespace, name)
        if found is None:
            return None
        return found.get("data", {}).get(key)

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str | None:
        """A Secret's value, decoded, or None when the Secret or the key is missing."""
        found = await self.get("v1", "Secret", namespace, name)
        raw = (found or {}).get("data", {}).get(key)
        if raw is None:
            return None
        try:
            return base64.b64decode(raw, validate=True).decode("utf-8").strip()
        except (ValueError, UnicodeDecodeError):
            return None

    async def post_event(self, owner: Owner, event_type: str, reason: str, message: str) -> None:
        """A core/v1 Event on the fleet, the way `kubectl describe` shows it."""
        now = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{owner.name}.", "namespace": owner.namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": owner.name,
                "namespace": owner.namespace,
                "uid": owner.uid,
            },
            "type": event_type,
            "reason": reason,
            "message": redact(message)[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._call(
            "POST",
            object_path("v1", "Event", owner.namespace),
            body=event,
            content_type="application/json",
        )
