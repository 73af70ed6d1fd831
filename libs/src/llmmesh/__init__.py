"""llmmesh: generated gRPC contracts and the runtime every llmmesh service shares."""
