"""The caller's workspace: its name, time zone and default currency."""
