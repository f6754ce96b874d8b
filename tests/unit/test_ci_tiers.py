"""On CI a skipped real_vllm or image test fails (its set-up broke); elsewhere it still skips."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import REPO

SKIPPING = """
import pytest

def test_needs_the_install():
    pytest.skip("vLLM CPU venv missing")
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, folder: str, ci: bool):
    shutil.copy(REPO / "conftest.py", pytester.path / "conftest.py")
    pytester.makeini(
        "[pytest]\naddopts = -p no:cloudcoil\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.mkpydir(folder)
    pytester.path.joinpath(folder, "test_tier.py").write_text(SKIPPING)
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider")


@pytest.mark.parametrize("tier", ["real_vllm", "image"])
def test_a_required_tier_that_skips_on_ci_fails_with_the_reason(pytester, monkeypatch, tier):
    result = _run(pytester, monkeypatch, tier, ci=True)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*CI is set, so the {tier} tier may not skip*venv missing*"])


def test_the_same_skip_stays_a_skip_off_ci(pytester, monkeypatch):
    _run(pytester, monkeypatch, "real_vllm", ci=False).assert_outcomes(skipped=1)


def test_other_tiers_may_skip_on_ci(pytester, monkeypatch):
    # Not `e2e`: a folder of that name would clash with the repository's e2e package once a test
    # of the session has imported it.
    _run(pytester, monkeypatch, "integration", ci=True).assert_outcomes(skipped=1)
