"""Runs one job on this worker process: claim it, load its inputs, call the engine, report, finish."""

from workers.runner.execute import execute_job

__all__ = ["execute_job"]
