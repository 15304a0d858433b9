"""The API's resources, one group of calls each (``client.models.list()``, ``client.audit.search()``)."""
