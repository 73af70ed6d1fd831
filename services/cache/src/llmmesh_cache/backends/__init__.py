"""Where cache entries live: Redis for shared state, or process memory when embedded."""
