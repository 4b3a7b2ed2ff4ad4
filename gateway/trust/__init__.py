"""Who may sign: certificates and their policy, revocation, the role registry and its roles, and the certificate
platform that combines them. Imports only the shared core modules (errors, ports)."""
