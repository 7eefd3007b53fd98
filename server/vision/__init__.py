"""Vision on the CPU (SPEC §9): models load on first use, once per worker."""
