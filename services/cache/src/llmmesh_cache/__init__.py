"""llmmesh cache service: exact and verified semantic answers, tenant-scoped, shared by replicas."""

from llmmesh.runtime.logging import keep_grpc_core_logs_to_errors

keep_grpc_core_logs_to_errors()
