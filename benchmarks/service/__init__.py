"""The service benchmark: the running API with Postgres, Redis and one Celery worker, under 1, 10 and
50 concurrent clients.

    python -m benchmarks.service            # starts its own stack on this machine's Postgres and Redis
"""
