"""llmmesh cache service: exact and verified semantic answers, tenant-scoped, shared by replicas."""
