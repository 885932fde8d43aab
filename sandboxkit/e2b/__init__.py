"""An E2B-compatible server: the unmodified ``e2b`` and ``e2b-code-interpreter`` SDKs
drive sandboxkit sessions through ``E2B_API_URL``/``E2B_SANDBOX_URL`` (the ``e2b``
extra; see docs/e2b.md). Nothing below this package knows about E2B."""

from __future__ import annotations

from ._app import Settings, api_app, sandbox_app, serve
from ._templates import Template, register_builtin, template_from

# the built-in templates' languages (``e2b-base``, ``e2b-code-interpreter``), usable by
# name from here on: a pool warms them, ``sandboxkit images`` builds and lists them
register_builtin()

__all__ = ["Settings", "Template", "api_app", "sandbox_app", "serve", "template_from"]
