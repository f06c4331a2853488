"""The operator's readers: status page, health probes, `/metrics`, `jsms doctor`."""
