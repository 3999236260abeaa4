"""The open-files limit of this process (RLIMIT_NOFILE), raised to what a fleet needs.

A lab fleet holds one listening socket per host and a connection per client worker; a rollout holds
one connection per worker and keeps every host's log file open until the run ends. Many systems
start processes with a soft limit of 1,024 under a hard limit far above it: the soft limit is
raised to the hard one when the need is above it, and a need above the hard limit is an error that
says what to raise (`ulimit -n`, limits.conf, systemd's LimitNOFILE).
"""

from __future__ import annotations

import resource

# This process's own files besides the fleet's: the interpreter's, the run's, certificates, pipes.
SPARE = 64


class OpenFilesError(Exception):
    """The hard limit on open files is below what the fleet needs."""


def ensure_open_files(needed: int, what: str) -> int:
    """Make sure this process may open `needed` files (`what` says who needs them, for the error):
    the soft limit is raised to the hard limit when below `needed`. Returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return needed if soft == resource.RLIM_INFINITY else soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise OpenFilesError(
            f"{what} need about {needed} open files, and this process may open at most {hard} (its hard "
            f"limit, `ulimit -Hn`); raise it (limits.conf nofile, systemd LimitNOFILE) or use fewer hosts")
    # Linux caps the soft limit at fs.nr_open whatever the hard limit says: never ask for infinity.
    raised = needed if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    return raised
