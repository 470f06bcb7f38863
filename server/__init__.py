"""HTTP only: routes, request parsing and validation, auth, the error envelope."""
