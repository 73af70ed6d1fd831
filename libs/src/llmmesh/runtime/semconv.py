"""Every span and metric attribute name the mesh records, in one place.

GenAI names follow the OpenTelemetry semantic conventions for generative AI; `llmmesh.*`
names are the gateway's own decisions. None of them ever holds prompt or answer text.
"""

# OpenTelemetry GenAI semantic conventions.
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
ERROR_TYPE = "error.type"
# The exception event, without exception.message (messages may quote prompts).
EVENT_EXCEPTION = "exception"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_STACKTRACE = "exception.stacktrace"

GEN_AI_CLIENT_OPERATION_DURATION = "gen_ai.client.operation.duration"
GEN_AI_CLIENT_TOKEN_USAGE = "gen_ai.client.token.usage"
GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"

# RPC semantic conventions.
RPC_SYSTEM = "rpc.system"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
RPC_GRPC_STATUS_CODE = "rpc.grpc.status_code"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"

# HTTP semantic conventions.
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
URL_PATH = "url.path"

# The gateway's own decisions.
TENANT = "llmmesh.tenant"
PROVIDER_INSTANCE = "llmmesh.provider.instance"
REQUEST_ID = "llmmesh.request_id"
ERROR_REASON = "llmmesh.error.reason"
ROUTE_PRIORITY = "llmmesh.route.priority"
ROUTE_COMPLEXITY = "llmmesh.route.complexity"
ROUTE_CHAIN = "llmmesh.route.chain"
ROUTE_SKIPPED_CIRCUIT_OPEN = "llmmesh.route.skipped_circuit_open"
ROUTE_SKIPPED_INCAPABLE = "llmmesh.route.skipped_incapable"
RATELIMIT_DECISION = "llmmesh.ratelimit.decision"
RATELIMIT_DENIED_LIMIT = "llmmesh.ratelimit.denied_limit"
CACHE_STATUS = "llmmesh.cache.status"
HEALTH_REASON = "llmmesh.health.reason"
CACHE_SIMILARITY = "llmmesh.cache.similarity"
CACHE_VERIFICATION_CHECK = "llmmesh.cache.verification.check"
CACHE_SKIP_REASON = "llmmesh.cache.skip_reason"
CACHE_OUTCOME = "llmmesh.cache.outcome"
ATTEMPTS = "llmmesh.attempts"
COST_USD = "llmmesh.cost_usd"
DEGRADED = "llmmesh.degraded"
CIRCUIT = "llmmesh.circuit"
CIRCUIT_STATE = "llmmesh.circuit.state"

# Span events.
EVENT_RETRY = "llmmesh.retry"
EVENT_FALLBACK = "llmmesh.fallback"
EVENT_CIRCUIT_CHANGE = "llmmesh.circuit.state_change"
EVENT_CANCELLED = "llmmesh.cancelled"
