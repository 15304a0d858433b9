"""API keys, scopes and tenants: who is calling, what they may do, and whose data they see."""
