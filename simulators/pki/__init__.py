"""A test PKI shaped like Taiwan's: a GRCA-like root, a MOICA-like intermediate, citizen certificates."""
