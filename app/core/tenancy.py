"""Tenants: every dataset, model, request, job and audit event belongs to one (see app.auth)."""

# The tenant of rows that predate tenants (migration 0005) and of the embedded demo.
DEFAULT_TENANT = "default"
