"""The run layer: everything between "run this program in that sandbox" and its events.

- ``jobs``: the job a run sends to the agent (limits, files, environment, follow-up);
- ``reader``: the agent's frames read back into events and a ``RunResult`` (the output
  kept to its cap, the host's backstop deadline, a run abandoned midway stopped);
- ``outcome``: a run's status and the limit that ended it, decided once;
- ``policy``: the compile step (its limits, widening for a compiler out of room) and
  fitting the sandbox to a run's limits;
- ``program``: ``Program``, compile once, run many, the next run queued ahead. Every
  kind of run (one-shot, session, ``start()``, the judge) goes through it.

Callers above this layer hand it a leased ``Box`` and read events. Of the frames, only
the reader sends and reads a run's (the job, its output, a kill); the jobs are built
from the wire module's types in ``jobs``; a live ``Process`` adds its stdin frames.
"""
