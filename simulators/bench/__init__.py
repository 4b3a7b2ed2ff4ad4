"""``vgw bench``: benchmarks printing JSON, each beside the ceiling it is judged against, and their load clients."""
