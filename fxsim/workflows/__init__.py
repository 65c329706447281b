"""Workflows: layer specs (TOML), running a layer, accumulator-width sweeps and the demo."""
