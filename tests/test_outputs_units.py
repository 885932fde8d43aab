"""Rich outputs, pure parts: MIME bundles (agent side), their collection under the cap,
the host's keeping of DISPLAY frames, the public model. No Docker."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from sandboxkit import DisplayData, InvalidInput, RunResult
from sandboxkit import _protocol as wire
from sandboxkit._run.reader import OutputBuffer
from sandboxkit.agent import _display

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 8


class Rich:
    def _repr_png_(self) -> bytes:
        return PNG

    def _repr_svg_(self) -> str:
        return "<svg/>"

    def _repr_html_(self) -> str:
        return "<b>x</b>"

    def _repr_markdown_(self) -> str:
        return "**x**"

    def _repr_json_(self) -> dict[str, int]:
        return {"x": 1}

    def __repr__(self) -> str:
        return "Rich()"


class Broken:
    def _repr_html_(self) -> str:
        raise RuntimeError("no html today")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return ({"text/latex": "$x$", "image/png": PNG}, {})


def test_bundle_has_every_representation_and_text() -> None:
    data = _display.bundle(Rich())
    assert base64.b64decode(data["image/png"]) == PNG
    assert data["image/svg+xml"] == "<svg/>"
    assert data["text/html"] == "<b>x</b>"
    assert data["text/markdown"] == "**x**"
    assert json.loads(data["application/json"]) == {"x": 1}
    assert data["text/plain"] == "Rich()"


def test_bundle_survives_a_broken_repr_and_takes_mimebundles() -> None:
    data = _display.bundle(Broken())
    assert "text/html" not in data
    assert data["text/latex"] == "$x$" and base64.b64decode(data["image/png"]) == PNG
    assert data["text/plain"].startswith("<")
    assert _display.bundle(42) == {"text/plain": "42"}
    assert _display.bundle(Rich) == {"text/plain": repr(Rich)}  # a class is not its instance


def _write(directory: Path, name: str, payload: dict[str, Any]) -> None:
    (directory / name).write_text(json.dumps(payload))


def test_collect_sends_in_order_within_the_cap_and_cleans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_display, "DIR", str(tmp_path))
    for i in range(3):
        _write(
            tmp_path, f"{i:020d}-1-{i}.json", {"kind": "display", "data": {"text/plain": "x" * 50}}
        )
    os.mkfifo(tmp_path / f"{9:020d}-1-9.json")  # hostile: must not block the agent
    (tmp_path / ".partial").write_text("half")  # a killed program's unfinished file
    sent: list[tuple[bytes, bytes]] = []
    size = len((tmp_path / f"{0:020d}-1-0.json").read_bytes())
    dropped = _display.collect(2 * size, lambda k, d: sent.append((k, d)), wire.DISPLAY)
    assert dropped is True
    assert [json.loads(d)["data"]["text/plain"] for _, d in sent] == ["x" * 50] * 2
    assert {k for k, _ in sent} == {wire.DISPLAY}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".partial"]
    assert _display.collect(10, lambda k, d: None, wire.DISPLAY) is False


def test_emit_writes_whole_files_the_agent_collects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_display, "DIR", str(tmp_path / "d"))
    _display.emit({"text/plain": "a"})
    _display.display(Rich())
    sent: list[bytes] = []
    assert _display.collect(1 << 20, lambda k, d: sent.append(d), wire.DISPLAY) is False
    got = [json.loads(d) for d in sent]
    assert got[0] == {"kind": "display", "data": {"text/plain": "a"}}
    assert "image/png" in got[1]["data"]


def test_host_keeps_outputs_up_to_the_cap_and_drops_malformed() -> None:
    out = OutputBuffer(keep=200)
    good = json.dumps({"kind": "display", "data": {"text/plain": "hi"}}).encode()
    out.add_display(good)
    out.add_display(b"not json")
    out.add_display(json.dumps({"kind": "nope", "data": {}}).encode())
    out.add_display(json.dumps({"kind": "result", "data": {"text/plain": 5}}).encode())
    assert [o.text for o in out.outputs] == ["hi"] and not out.truncated
    out.add_display(json.dumps({"kind": "display", "data": {"text/plain": "y" * 300}}).encode())
    assert out.truncated and len(out.outputs) == 1


def test_display_data_model() -> None:
    d = DisplayData(
        data={
            "image/png": base64.b64encode(PNG).decode(),
            "application/json": '{"a": [1]}',
            "text/plain": "t",
        }
    )
    assert d.kind == "display" and d.png == PNG and d.json_data == {"a": [1]}
    assert d.text == "t" and d.html is None and d.svg is None and d.markdown is None
    assert d.mime_types == ("image/png", "application/json", "text/plain")
    r = RunResult(status="ok", outputs=(d,))
    again = RunResult.model_validate_json(r.model_dump_json())
    assert again.outputs == (d,) and RunResult(status="ok").outputs == ()
    with pytest.raises(InvalidInput):
        DisplayData(kind="other", data={})  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # frozen
        d.kind = "result"  # type: ignore[misc]
