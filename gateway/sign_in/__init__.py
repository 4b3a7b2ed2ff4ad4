"""Who is at the console: a person signs a one-time challenge with their card, and the gateway, having
checked chain, revocation and the role registry, knows them by name and role. Built on gateway.xmlsec and
gateway.trust; the nonces and sessions it needs remembered are the store's (adapters/storage)."""
