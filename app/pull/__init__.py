"""The other way in: pulling /v1/report and /v1/reply when callbacks are off (puller, its
state, the lease and rate window, the clock, the spool)."""
