"""Piston's v2 API (engineer-man/piston) over sandboxkit: a self-hosted drop-in for the
users of Piston's public instance and of Piston deployments.

``sandboxkit serve`` mounts it at ``/api/v2`` beside the Judge0 API (``--no-piston``
turns it off); to mount it in an application of your own::

    from fastapi import FastAPI
    from sandboxkit.piston import PistonSettings, create_router

    app = FastAPI()
    app.include_router(create_router(PistonSettings(run_timeout=5000)), prefix="/api/v2")

Routes: ``GET /runtimes``, ``POST /execute``, ``GET|POST|DELETE /packages`` and the
``/connect`` WebSocket, with Piston's shapes, statuses and messages. The wing stands on
``Sandbox``/``SandboxPool`` alone: nothing below it knows Piston. Differences from Piston
are listed in docs/piston.md.
"""

from ._routes import create_router
from ._settings import PistonSettings

__all__ = ["PistonSettings", "create_router"]
