# mypy: ignore-errors
"""What E2B's code-interpreter kernel adds to a Python kernel, loaded into the session's
kernel (not imported by the server: ``_interpreter`` sends this file's text once per
kernel, the first cell of each kernel runs it).

It extends sandboxkit's display of rich outputs from inside, as E2B's IPython startup
scripts do for Jupyter: a matplotlib figure's bundle gains ``e2b/chart`` (the chart's
data: line, scatter, bar, pie, box-and-whisker, several axes as a superchart), a pandas
DataFrame's gains ``e2b/data`` (its columns), a PIL image shows on ``show()`` and on
``save(path)``, and ``IPython.display.display`` works where IPython is not installed.
``sys._e2b_main(value)`` shows a cell's last expression marked as the main result.

Everything here is best effort: a chart that cannot be read leaves the figure's PNG as
it was. Standard library at load; matplotlib, pandas and PIL only when the user's code
has imported them.
"""

import builtins
import contextlib
import json
import re
import sys

MAIN = "application/x-e2b-main"


class _Namespace:
    """sandboxkit's display module, seen through its namespace: the module may be out
    of ``sys.modules`` (the kernel hides the agent from the user), its ``display`` is
    not; setting a name here is what the module's own functions then look up."""

    def __init__(self, names):
        object.__setattr__(self, "_names", names)

    def __getattr__(self, name):
        return self._names[name]

    def __setattr__(self, name, value):
        self._names[name] = value


# in the kernel, the agent's ``display`` is a builtin; imported anywhere else (the host's
# tests import every module) there is nothing to extend and nothing is installed
_IN_KERNEL = hasattr(builtins, "display")
_display = _Namespace(builtins.display.__globals__ if _IN_KERNEL else {})
_bundle = _display.bundle if _IN_KERNEL else None
_UNIT = re.compile(r"\(([^()]+)\)\s*$|\[([^\[\]]+)\]\s*$")


# ----------------------------------------------------------------------- charts
def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _unit(label):
    match = _UNIT.search(label or "")
    return (match.group(1) or match.group(2)).strip() if match else None


def _axis(ax, which):
    """One axis: its scale, ticks and labels, and how to show a data value."""
    import matplotlib.dates as mdates

    axis = ax.xaxis if which == "x" else ax.yaxis
    scale = ax.get_xscale() if which == "x" else ax.get_yscale()
    ticks = list(ax.get_xticks() if which == "x" else ax.get_yticks())
    labels = [
        t.get_text() for t in (ax.get_xticklabels() if which == "x" else ax.get_yticklabels())
    ]
    units = getattr(axis, "units", None)
    formatter = axis.get_major_formatter()
    if isinstance(
        formatter, (mdates.AutoDateFormatter, mdates.DateFormatter, mdates.ConciseDateFormatter)
    ):

        def show(v):
            return mdates.num2date(v).isoformat()

        return "datetime", [show(t) for t in ticks], labels, show
    mapping = getattr(units, "_mapping", None)
    if isinstance(mapping, dict) and mapping:
        names = {float(v): str(k) for k, v in mapping.items()}

        def show(v):
            return names.get(float(v), _float(v))

        return "categorical", [_float(t) for t in ticks], labels, show
    return scale, [_float(t) for t in ticks], labels, _float


def _labels(ax):
    x_label, y_label = ax.get_xlabel() or None, ax.get_ylabel() or None
    return {
        "title": ax.get_title() or None,
        "x_label": x_label,
        "y_label": y_label,
        "x_unit": _unit(x_label),
        "y_unit": _unit(y_label),
    }


def _points(ax, kind, series):
    x_scale, x_ticks, x_tick_labels, x_show = _axis(ax, "x")
    y_scale, y_ticks, y_tick_labels, y_show = _axis(ax, "y")
    elements = [
        {"label": label, "points": [[x_show(x), y_show(y)] for x, y in xy]} for label, xy in series
    ]
    return {
        "type": kind,
        **_labels(ax),
        "x_scale": x_scale,
        "x_ticks": x_ticks,
        "x_tick_labels": x_tick_labels,
        "y_scale": y_scale,
        "y_ticks": y_ticks,
        "y_tick_labels": y_tick_labels,
        "elements": elements,
    }


def _tick_label(ax, x):
    ticks = list(ax.get_xticks())
    labels = [t.get_text() for t in ax.get_xticklabels()]
    if not ticks:
        return str(x)
    nearest = min(range(len(ticks)), key=lambda i: abs(ticks[i] - x))
    return labels[nearest] if nearest < len(labels) and labels[nearest] else str(x)


def _outline(line):
    """A box drawn as a line (``boxplot`` without ``patch_artist``): a closed rectangle."""
    xy = line.get_xydata()
    if len(xy) != 5 or tuple(xy[0]) != tuple(xy[-1]):
        return None
    if len({float(x) for x in xy[:, 0]}) != 2 or len({float(y) for y in xy[:, 1]}) != 2:
        return None
    return xy


def _box_outlines(ax):
    """The boxes of a boxplot drawn with lines: rectangles with a whisker (a vertical
    line) leaving their middle; none for any other chart."""
    lines = list(ax.get_lines())
    outlines = [xy for xy in map(_outline, lines) if xy is not None]
    found = []
    for xy in outlines:
        center = (float(xy[:, 0].min()) + float(xy[:, 0].max())) / 2
        for line in lines:
            xs = {float(x) for x in line.get_xdata()}
            if len(line.get_xdata()) == 2 and xs == {center}:
                found.append(xy)
                break
    return found


def _boxes(ax, boxes):
    """Box-and-whisker data, each box given by its outline's vertices."""
    elements = []
    lines = list(ax.get_lines())
    for vertices in boxes:
        x0, x1 = float(vertices[:, 0].min()), float(vertices[:, 0].max())
        q1, q3 = float(vertices[:, 1].min()), float(vertices[:, 1].max())
        center = (x0 + x1) / 2
        low, high, median, outliers = q1, q3, None, []
        width = x1 - x0
        for line in lines:
            xs = [float(x) for x in line.get_xdata()]
            ys = [float(y) for y in line.get_ydata()]
            if not xs or min(xs) < x0 - 1e-9 or max(xs) > x1 + 1e-9:
                continue  # another box's
            if line.get_linestyle() in ("None", "", " "):  # fliers: markers only
                outliers += ys
            elif len(set(xs)) == 1:  # a whisker: from a quartile out to an extreme
                low, high = min(low, *ys), max(high, *ys)
            elif len(set(ys)) == 1 and abs(max(xs) - min(xs) - width) <= 1e-6 * (width + 1):
                median = ys[0]  # the one line as wide as the box (caps are narrower)
        elements.append(
            {
                "label": _tick_label(ax, center),
                "min": low,
                "first_quartile": q1,
                "median": median if median is not None else (q1 + q3) / 2,
                "third_quartile": q3,
                "max": high,
                "outliers": outliers,
            }
        )
    return {"type": "box_and_whisker", **_labels(ax), "elements": elements}


def _chart_of_axes(ax):
    from matplotlib.collections import PathCollection
    from matplotlib.container import BarContainer
    from matplotlib.patches import PathPatch, Rectangle, Wedge

    patches = list(ax.patches)
    wedges = [p for p in patches if isinstance(p, Wedge)]
    if wedges:
        return {
            "type": "pie",
            "title": ax.get_title() or None,
            "elements": [
                {
                    "label": w.get_label(),
                    "angle": round(abs(w.theta2 - w.theta1), 4),
                    "radius": float(w.r),
                }
                for w in wedges
            ],
        }
    boxes = [p.get_path().vertices for p in patches if isinstance(p, PathPatch)]
    boxes = boxes or _box_outlines(ax)
    if boxes:
        return _boxes(ax, boxes)
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    if bars:
        elements = []
        for container in bars:
            group = container.get_label()
            for rect in container.patches:
                if isinstance(rect, Rectangle):
                    x = rect.get_x() + rect.get_width() / 2
                    elements.append(
                        {
                            "label": _tick_label(ax, x),
                            "group": group,
                            "value": float(rect.get_height()),
                        }
                    )
        return {"type": "bar", **_labels(ax), "elements": elements}
    lines = list(ax.get_lines())
    if lines:
        return _points(ax, "line", [(line.get_label(), line.get_xydata()) for line in lines])
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    if scatters:
        return _points(ax, "scatter", [(c.get_label(), c.get_offsets()) for c in scatters])
    return {"type": "unknown", "title": ax.get_title() or None, "elements": []}


def chart(fig):
    """A figure's chart data as E2B returns it (None: nothing to read)."""
    fig.canvas.draw()  # tick labels are filled in by drawing
    axes = [ax for ax in fig.axes if ax.get_visible()]
    if not axes:
        return None
    suptitle = getattr(fig, "_suptitle", None)
    title = suptitle.get_text() if suptitle is not None else None
    if len(axes) == 1:
        single = _chart_of_axes(axes[0])
        if title and not single.get("title"):
            single["title"] = title
        return single
    return {
        "type": "superchart",
        "title": title or None,
        "elements": [_chart_of_axes(ax) for ax in axes],
    }


# ------------------------------------------------------------------- bundles
def _data(frame, pandas):
    columns = frame.to_dict(orient="list")
    for name, values in columns.items():
        columns[name] = [v.isoformat() if isinstance(v, pandas.Timestamp) else v for v in values]
    return json.dumps({str(k): v for k, v in columns.items()}, default=str)


def bundle(obj):
    data = _bundle(obj)
    if _display._is_figure(obj):
        with contextlib.suppress(Exception):  # the PNG is there either way
            found = chart(obj)
            if found is not None:
                data["e2b/chart"] = json.dumps(found, default=str)
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(obj, pandas.DataFrame):
        with contextlib.suppress(Exception):
            data["e2b/data"] = _data(obj, pandas)
    return data


def show_figures(*_args, **_kwargs):
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in list(plt.get_fignums()):
        fig = plt.figure(num)
        try:
            _display.emit(bundle(fig))
        finally:
            plt.close(fig)


def main(value):
    """A cell's last expression, shown as the cell's main result."""
    data = bundle(value)
    data[MAIN] = "1"
    _display.emit(data)
    if _display._is_figure(value):
        _display._close(value)


# ------------------------------------------------------------- PIL, IPython
def _patch_pil(image_module):
    cls = image_module.Image
    if getattr(cls, "_e2b_patched", False):
        return
    save = cls.save

    def shown(self, *_args, **_kwargs):
        builtins.display(self)

    def saved(self, fp, *args, **kwargs):
        if isinstance(fp, str):
            builtins.display(self)
        return save(self, fp, *args, **kwargs)

    cls.show, cls.save, cls._e2b_patched = shown, saved, True


class _AfterImport:
    """Patches a module right after it is first imported (a meta-path finder that
    only wraps the loading of the names it is given)."""

    def __init__(self, patches):
        self.patches = patches

    def find_spec(self, name, path, target=None):
        if name not in self.patches:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        inner, patch = loader.exec_module, self.patches[name]

        def exec_module(module):
            inner(module)
            with contextlib.suppress(Exception):
                patch(module)

        loader.exec_module = exec_module
        return spec


def _ipython_display(*objs, raw=False, **_options):
    for obj in objs:
        if raw and isinstance(obj, dict):
            _display.emit(
                {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in obj.items()}
            )
        else:
            builtins.display(obj)


class _IPythonShim:
    """``import IPython.display`` where IPython is not installed: a module whose
    ``display`` is the kernel's (with ``raw=True`` bundles). Made only when imported, so
    libraries that look for IPython in ``sys.modules`` see it only if the user asked."""

    NAMES = ("IPython", "IPython.display")

    def find_spec(self, name, path, target=None):
        if name not in self.NAMES:
            return None
        from importlib.machinery import PathFinder
        from importlib.util import spec_from_loader

        if name == "IPython" and PathFinder.find_spec(name, path) is not None:
            sys.meta_path.remove(self)  # the real one is installed: not needed
            return None
        return spec_from_loader(name, self, is_package=name == "IPython")

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.display = _ipython_display
        module.get_ipython = lambda: None  # matplotlib asks: no IPython shell here


def install():
    _display.bundle = bundle  # display() and a cell's result look it up at each call
    _display.show_figures = show_figures  # what pyplot.show becomes when imported
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.show = show_figures
    if "PIL.Image" in sys.modules:
        _patch_pil(sys.modules["PIL.Image"])
    else:
        sys.meta_path.insert(0, _AfterImport({"PIL.Image": _patch_pil}))
    if not any(isinstance(f, _IPythonShim) for f in sys.meta_path):
        sys.meta_path.append(_IPythonShim())
    sys._e2b_main = main


if _IN_KERNEL:
    install()
