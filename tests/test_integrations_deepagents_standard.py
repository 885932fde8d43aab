"""LangChain's own standard test suite for deepagents sandbox providers
(``langchain-tests``' ``SandboxIntegrationTests``), run unmodified against
SandboxkitBackend with the suite's default root (``/tmp/test_sandbox_ops/``).

langchain-tests 1.1.9 (the newest) checks two behaviours deepagents 0.7 changed since:
``write`` over an existing file fails ("already exists"; deepagents 0.7 overwrites) and
``glob`` returns paths relative to the search root (deepagents 0.7: absolute, for its
permission rules). The backend offers both conventions; the suite gets the one it checks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("deepagents")
pytest.importorskip("langchain_tests")

from deepagents.backends.protocol import SandboxBackendProtocol
from langchain_tests.integration_tests import SandboxIntegrationTests

from sandboxkit.integrations.deepagents import SandboxkitBackend

pytestmark = pytest.mark.docker


class TestSandboxkitStandard(SandboxIntegrationTests):
    @pytest.fixture(scope="class")
    def sandbox(self) -> Iterator[SandboxBackendProtocol]:
        with SandboxkitBackend(write_existing="refuse", glob_paths="relative") as backend:
            yield backend
