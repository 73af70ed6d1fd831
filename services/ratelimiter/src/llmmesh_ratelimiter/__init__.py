"""llmmesh ratelimiter: atomic request, token and concurrency limits shared by every replica."""
