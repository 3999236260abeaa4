"""dsrprep: prepare Windows servers for Direct Server Return over PowerShell Remoting."""

__version__ = "0.1.0"
