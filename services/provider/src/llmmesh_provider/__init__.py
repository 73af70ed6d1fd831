"""llmmesh provider service: one streaming contract over OpenAI, Anthropic, Ollama, a simulator."""
