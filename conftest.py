"""Repository-wide pytest hooks."""

from pathlib import Path


def pytest_collection_modifyitems(config, items):
    """Mark each test by the folder it lives in, so `-m unit` / `-m real_vllm` select layers."""
    import pytest

    for item in items:
        path = Path(str(item.fspath))
        for layer in ("unit", "integration", "real_vllm", "image", "e2e"):
            if layer in path.parts:
                item.add_marker(getattr(pytest.mark, layer))
