"""Platform benchmarks (`uv run python -m bench.run`); results go to bench/results/."""
