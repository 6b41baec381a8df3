"""Work and events between replicas, through Redis: the job queue (Streams, a consumer group),
run leases and cancel requests, and the fan-out of a run's events to followers anywhere."""
