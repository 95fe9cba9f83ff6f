"""The station: the daemon's main loop, one bay's pipeline, and what `recdock status` reads."""
