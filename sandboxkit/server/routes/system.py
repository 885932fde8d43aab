"""Judge0's system and configuration documents: about, version, isolate, license,
``/config_info`` and ``/system_info``."""

from __future__ import annotations

import os
import platform
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from ..._version import __version__
from .._judge0 import CONFIG, VERSION
from .._settings import Settings
from ._common import Service

router = APIRouter()


def config_document(cfg: Settings) -> dict[str, Any]:
    """Judge0's configuration with this server's own settings in it."""
    return {
        **CONFIG,
        "enable_submission_delete": cfg.enable_submission_delete,
        "max_queue_size": cfg.max_queue_size,
        "enable_network": False,
        "allow_enable_network": cfg.allow_network,
        "callbacks_max_tries": cfg.callback_tries,
        "callbacks_timeout": cfg.callback_timeout,
    }


@router.get("/about")
async def about() -> dict[str, Any]:
    return {
        "version": VERSION,
        "homepage": None,
        "source_code": None,
        "maintainer": f"sandboxkit {__version__}",
    }


@router.get("/version")
async def version() -> PlainTextResponse:
    return PlainTextResponse(VERSION)


@router.get("/isolate")
async def isolate() -> PlainTextResponse:
    return PlainTextResponse(
        f"sandboxkit {__version__}: no isolate; every submission runs in a Docker "
        "container of its own (no network, read-only root, cgroup limits)\n"
    )


@router.get("/license")
async def license_text() -> PlainTextResponse:
    return PlainTextResponse(
        f"sandboxkit {__version__}, a Judge0 CE {VERSION} compatible API. "
        "Judge0 is a trademark of its authors; this server shares none of its code.\n"
    )


@router.get("/config_info")
async def config_info(service: Service) -> dict[str, Any]:
    return config_document(service.settings)


@router.get("/system_info")
async def system_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "Architecture": platform.machine(),
        "CPU(s)": str(os.cpu_count() or 1),
        "Model name": platform.processor() or platform.machine(),
        "Kernel": platform.release(),
    }
    try:
        text = await anyio.Path("/proc/meminfo").read_text()
        meminfo = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        info["Mem"] = meminfo.get("MemTotal", "").strip()
        info["Swap"] = meminfo.get("SwapTotal", "").strip()
    except OSError:
        pass
    return info
