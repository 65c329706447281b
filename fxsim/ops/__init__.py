"""Layer operations run through a Datapath: gemm, conv2d."""
