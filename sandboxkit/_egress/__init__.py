"""Egress by domain: a sandbox reaches exactly the host names its policy allows.

- :mod:`.policy`: the public :class:`Egress` policy, its checks and its matching (pure).
- :mod:`.gateway`: the gateway program (standard library only), run in a container beside
  the sandboxes: a DNS responder and an SNI/Host splice proxy, told each sandbox's policy
  over its stdin.
- :mod:`.hub`: the host side: starts one gateway per engine, makes each sandbox's own
  internal network, and speaks to the gateway.
"""

from .policy import Egress, EgressSettings, NetworkUsage

__all__ = ["Egress", "EgressSettings", "NetworkUsage"]
