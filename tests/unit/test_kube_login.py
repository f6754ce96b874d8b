"""The operator's credentials: read when asked (not at import), and a rotated token is picked up."""

from __future__ import annotations

import asyncio

import pytest
import yaml

from controllers.adapters import kube
from controllers.adapters.kube import Kube, connection_info


def _kubeconfig(path, server: str, token: str) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                "clusters": [{"name": "k", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": token}}],
            }
        )
    )


def test_the_kubeconfig_is_read_when_asked(tmp_path, monkeypatch):
    if kube.SERVICE_ACCOUNT_TOKEN.exists():
        pytest.skip("running in a pod: the service account wins, as it should")
    first, second = tmp_path / "a", tmp_path / "b"
    _kubeconfig(first, "http://127.0.0.1:1", "one")
    _kubeconfig(second, "http://127.0.0.1:2", "two")
    monkeypatch.setenv("KUBECONFIG", str(first))
    assert (connection_info().server, connection_info().token) == ("http://127.0.0.1:1", "one")
    monkeypatch.setenv("KUBECONFIG", str(second))
    assert (connection_info().server, connection_info().token) == ("http://127.0.0.1:2", "two")


def test_no_credentials_is_a_login_error(monkeypatch):
    if kube.SERVICE_ACCOUNT_TOKEN.exists():
        pytest.skip("running in a pod: the service account wins, as it should")
    monkeypatch.setenv("KUBECONFIG", "")
    monkeypatch.setenv("HOME", "/nonexistent")
    with pytest.raises(kube.kopf.LoginError, match="kubeconfig"):
        connection_info()


def test_a_rotated_service_account_token_is_read_again(tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("old\n")
    monkeypatch.setattr(kube, "TOKEN_REREAD_S", 0.0)  # every request re-reads it

    async def headers() -> tuple[dict[str, str], dict[str, str]]:
        info = kube.kopf.ConnectionInfo(server="http://127.0.0.1:1", token="old")
        client = Kube(info, token_file=token)
        try:
            before = client._headers(None)
            token.write_text("new\n")
            return before, client._headers(None)
        finally:
            await client.close()

    before, after = asyncio.run(headers())
    assert before["Authorization"] == "Bearer old"
    assert after["Authorization"] == "Bearer new"
