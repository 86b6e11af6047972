"""`mudpuppy-monitor run -- CMD`: run a training command with the monitor injected.

`cli` parses, `job` runs the command and ends its run, `output` keeps its output, `hook` is the
startup hook loaded into every Python process of the job (through `boot/sitecustomize.py`).
"""
