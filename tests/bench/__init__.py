"""The benchmarks run small: each reports its figure beside its baseline (no timing asserts)."""
