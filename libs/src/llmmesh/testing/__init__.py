"""Test kit for llmmesh and its users: real servers on free ports, fake upstreams, fixtures."""
