"""Engines: what executes a datapath. Integer and float accumulation, block (MX) formats, the output stage
(requantization) and the exactness proofs that let a datapath run as one BLAS call."""
