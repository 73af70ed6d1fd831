"""Benchmark of ratelimiter decisions: the Redis backend directly, and through the gRPC hop."""
