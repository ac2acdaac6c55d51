"""Benchmarks (``make bench``): measured here, never asserted as timings inside tests."""
