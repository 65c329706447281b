"""Shared test settings.

Hypothesis runs derandomized in CI (CI=true) so a submission's result does not depend on luck, and with
no deadline anywhere: the first call of a Numba kernel includes its compilation.
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fxsim",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=bool(os.environ.get("CI")),
    print_blob=True,
)
settings.load_profile("fxsim")
