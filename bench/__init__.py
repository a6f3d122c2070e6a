"""minigpt's benchmarks, kept out of the package the chapters import.

    python -m bench [peak] [train] [attention] [generate] [flash] [quick]   # from the repository root

`harness` runs and prints the comparisons, `seed_model` is the reference side (our
re-implementation of the seed's model), `mfu` the matmul peak and FLOP counts, `child` the
fresh processes some sides run in. The stored logs are in bench/results/.
"""
