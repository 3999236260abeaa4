"""PowerShell 2.0-compatible templates, one folder per step, shipped inside the wheel."""
