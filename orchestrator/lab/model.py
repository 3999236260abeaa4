"""The host model's names as tests outside the lab's own suite still import them
(tests/unit/test_plan.py, tests/unit/test_plan_binding.py, tests/lab/test_server_protocol.py).
The model itself lives in orchestrator.lab.host (the host and its facts), net, firewall, iis,
system (its state), steps/ (what each template does) and build (seeded fleets); once those tests
import from there, this module goes.
"""

from orchestrator.lab.build import build_fleet
from orchestrator.lab.firewall import AdvFirewall
from orchestrator.lab.host import WindowsHost

__all__ = ["AdvFirewall", "WindowsHost", "build_fleet"]
