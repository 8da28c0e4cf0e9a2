"""The core: PID 1 (or a child subreaper). Reaping, signals, the plan's start and stop
order, monitors, the main command, service output and the control socket."""
