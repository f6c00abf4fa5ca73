"""The `appliance` command line (kept light: see main.py)."""

from appliance.cli.main import main

__all__ = ["main"]
