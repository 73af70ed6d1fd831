"""Turn prompt text into vectors: the provider service's Embed RPC, a local model, or a hash."""
