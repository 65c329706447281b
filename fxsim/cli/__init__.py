"""The ``fxsim`` command: ``main`` (run, sweep, export, verify, formats, demo), ``testbench`` and ``model``."""
