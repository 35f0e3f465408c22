"""Benchmarks of Punchline: run each with `python -m benchmarks.<name>`."""
