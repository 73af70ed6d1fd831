"""Benchmarks of the cache service: lookup latency and semantic-hit quality."""
