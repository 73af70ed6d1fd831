"""One module per upstream kind, each implementing the ChatBackend and/or Embedder protocol."""
