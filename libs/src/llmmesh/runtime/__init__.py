"""The runtime every llmmesh service shares: server bootstrap, settings, logging, errors."""
