"""``vgw demo``: the whole system on one machine, its probes, signatures, evidence and report."""
