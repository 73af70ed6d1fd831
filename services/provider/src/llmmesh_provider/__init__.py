"""llmmesh provider service: one streaming contract over OpenAI, Anthropic, Ollama, a simulator."""

from llmmesh.runtime.logging import keep_grpc_core_logs_to_errors

keep_grpc_core_logs_to_errors()
