"""Numba kernels: plain numeric functions over integers and arrays.

This package never imports ``fxsim``: all meaning (formats, modes) is resolved there and passed down as
numbers. Mode numbers are defined in ``kernels.rounding``.
"""
