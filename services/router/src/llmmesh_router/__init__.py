"""llmmesh router: the front door of the mesh."""

from llmmesh.runtime.logging import keep_grpc_core_logs_to_errors

keep_grpc_core_logs_to_errors()
