"""The two names tests/lab/test_server_protocol.py still imports from here. The host model lives in
orchestrator.lab.host (the host and its facts), net, firewall, iis, system (its state), steps/
(what each template does) and build (seeded fleets); once that test imports from those, this
module goes.
"""

from orchestrator.lab.build import build_fleet
from orchestrator.lab.firewall import AdvFirewall

__all__ = ["AdvFirewall", "build_fleet"]
