"""The package version, one place (setup.cfg reads it; manifests record it)."""
__version__ = "0.1.0"
