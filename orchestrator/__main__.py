"""`python -m orchestrator` runs the dsrprep command line."""

from orchestrator.cli import main

main()
