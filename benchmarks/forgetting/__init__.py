"""The forgetting benchmark: every method against retraining, on MNIST (or digits with --quick).

python -m benchmarks.forgetting --data ../shared/data/mnist.npz      # the full run, 3 seeds
python -m benchmarks.forgetting --quick                              # digits, 1 seed, < 1 minute
"""
