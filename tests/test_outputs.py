"""Rich outputs from real sandboxes: figures on plt.show(), display() and a session's
last expression (a DataFrame's HTML, a PIL image's PNG), the cap, and no matplotlib
loaded for programs that never import it."""

from __future__ import annotations

import pytest

import sandboxkit as sk

pytestmark = pytest.mark.docker

PNG = b"\x89PNG\r\n\x1a\n"
SLOW = sk.Limits(time=120)  # matplotlib's import takes seconds on a loaded machine

RICH = """
class Rich:
    def _repr_svg_(self): return '<svg xmlns="http://www.w3.org/2000/svg"/>'
    def _repr_markdown_(self): return '**bold**'
    def _repr_json_(self): return {'a': [1, 2]}
    def __repr__(self): return 'Rich()'
"""


async def test_plt_show_gives_png_outputs_one_shot() -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3])\nplt.show()\n"
        "fig, ax = plt.subplots(); ax.bar([1], [2]); plt.show()\n"
        "plt.plot([3, 2])\n"  # never shown: a script's unshown figure is not an output
        "import matplotlib; print(matplotlib.get_backend())\n"
    )
    r = await sk.Sandbox.run(code, language="python-data", limits=SLOW)
    assert r.status == "ok", r.stderr
    assert r.stdout.strip().lower() == "agg"
    assert [o.kind for o in r.outputs] == ["display", "display"]
    for o in r.outputs:
        assert o.png is not None and o.png.startswith(PNG)
        assert "Figure" in o.text


async def test_session_display_and_last_expression() -> None:
    async with sk.Sandbox(language="python-data", keep_state=True, limits=SLOW) as sb:
        r = await sb.run("import pandas as pd\ndf = pd.DataFrame({'col': [1, 2]})\ndf")
        assert r.status == "ok" and "col" in r.stdout  # the repr is printed, as before
        (out,) = r.outputs
        assert out.kind == "result" and out.html is not None and "<table" in out.html
        r = await sb.run("from PIL import Image\nImage.new('RGB', (5, 5), 'blue')")
        (out,) = r.outputs
        assert out.kind == "result" and out.png is not None and out.png.startswith(PNG)
        r = await sb.run("display(df.head(1), 'plain')\nNone")
        assert [o.kind for o in r.outputs] == ["display", "display"]
        assert r.outputs[0].html is not None and r.outputs[1].data == {"text/plain": "'plain'"}
        # a figure left open at the end of a cell is shown, as in a notebook
        r = await sb.run("import matplotlib.pyplot as plt\nplt.plot([1, 2]);")
        assert len(r.outputs) == 1 and r.outputs[0].png is not None
        r = await sb.run("print('no outputs')")
        assert r.outputs == ()


async def test_plain_python_display_types_and_no_matplotlib() -> None:
    async with sk.Sandbox(language="python", keep_state=True) as sb:
        r = await sb.run(RICH + "display(Rich())\nimport sys\nprint('matplotlib' in sys.modules)")
        assert r.stdout == "False\n"
        (out,) = r.outputs
        assert out.svg is not None and out.markdown == "**bold**"
        assert out.json_data == {"a": [1, 2]} and out.text == "Rich()"
        r = await sb.run("Rich()")
        assert r.stdout == "Rich()\n" and r.outputs[0].kind == "result"
    r = await sk.Sandbox.run(RICH + "display(Rich(), Rich())")
    assert r.status == "ok" and len(r.outputs) == 2


async def test_outputs_are_capped_like_output() -> None:
    code = "for i in range(50):\n    display('x' * 1000)\n"
    r = await sk.Sandbox.run(code, limits=sk.Limits(output_bytes=10_000))
    assert r.status == "ok" and r.truncated
    assert 0 < len(r.outputs) < 10
    assert sum(len(o.text) for o in r.outputs) <= 10_000


async def test_failed_and_timed_out_runs_keep_what_they_showed() -> None:
    r = await sk.Sandbox.run("display('before')\nraise ValueError('x')")
    assert r.status == "error" and [o.text for o in r.outputs] == ["'before'"]
    r = await sk.Sandbox.run("display('early')\nwhile True: pass", limits=sk.Limits(time=1))
    assert r.status == "timeout" and [o.text for o in r.outputs] == ["'early'"]
