"""The built-in ``python-data`` language: Python with numpy, pandas, matplotlib and Pillow
from Debian's packages, so figures and tables come back as rich outputs out of the box.

matplotlib builds a font cache on its first import (seconds); the image builds it once
into :data:`MPL_CACHE`, and the agent's display hook (``agent/_display.py``) copies it
into the run's writable ``MPLCONFIGDIR`` when a program imports matplotlib.
"""

from __future__ import annotations

from .builtin import PYTHON
from .spec import LanguageSpec

MPL_CACHE = "/opt/sandboxkit/matplotlib"

PYTHON_DATA: LanguageSpec = PYTHON.extend(
    "python-data",
    aliases=("pydata",),
    packages=("python3-numpy", "python3-pandas", "python3-matplotlib", "python3-pil"),
    setup=(
        f"mkdir -p {MPL_CACHE} && MPLCONFIGDIR={MPL_CACHE} MPLBACKEND=Agg "
        "python3 -c 'import matplotlib.pyplot, pandas, numpy' && chmod -R a+rX "
        f"{MPL_CACHE}",
    ),
    env={**PYTHON.env, "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/.matplotlib"},
    version_command=(
        "python3",
        "-c",
        "import sys, numpy, pandas, matplotlib; print('Python', sys.version.split()[0], "
        "'numpy', numpy.__version__, 'pandas', pandas.__version__, "
        "'matplotlib', matplotlib.__version__)",
    ),
)
