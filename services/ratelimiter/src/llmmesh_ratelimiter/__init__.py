"""llmmesh ratelimiter: atomic request, token and concurrency limits shared by every replica."""

from llmmesh.runtime.logging import keep_grpc_core_logs_to_errors

keep_grpc_core_logs_to_errors()
