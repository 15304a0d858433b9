"""Operations: structured logs with request/job ids, Prometheus metrics; see api.py for the API side."""
