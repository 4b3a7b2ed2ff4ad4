"""The HTTPS site: routes and problem answers, OpenAPI, metrics, query parameters, the rate limit, the client's
identity from its certificate, TLS, the health check. Imports only storage below it."""
