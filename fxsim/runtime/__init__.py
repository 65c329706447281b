"""Runtime helpers: threads, scratch memory, worker pools, interrupts, and atomic reading and writing of files."""
