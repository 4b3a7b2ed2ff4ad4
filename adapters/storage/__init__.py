"""The stores: the SQL base shared by SQLite and PostgreSQL, the bank, budget and notice SQL, the relay turn,
the store factory and the schema migrations. The bottom of adapters/: imports only the core."""
