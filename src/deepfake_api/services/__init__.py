"""What routers call instead of the engine, the store or the queue: images (judge, then tell the
alerts side) and jobs (admit + create atomically, cancel, get; every state change of a job)."""
