"""The agent's entry: ``python3 -I /opt/sandboxkit/agent.pyc`` in an image (this file,
compiled when the image is built), ``python -m sandboxkit.agent`` from an installed tree.

In the image the package sits in ``lib/`` beside this file, and ``-I`` puts no script
directory on ``sys.path``: that one directory is added here (and taken away again in
the user's program, see ``_inline.forget_agent``).
"""

import sys

if not __package__:
    sys.path.insert(0, __file__.rpartition("/")[0] + "/lib")

from sandboxkit.agent._boot import main
from sandboxkit.agent._inline import Become

program = None
try:
    main()
except Become as exc:  # in a forked run's child: the agent's stack is gone, run the program
    program = exc
if program is not None:
    program.__traceback__ = None
    program.run()  # outside the except block: the program sees no exception being handled
