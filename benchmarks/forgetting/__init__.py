"""The forgetting benchmark: every method at its defaults, its documented variants and auto against
retraining, each model through the service's verification gate.

python -m benchmarks.forgetting --profile mnist --data ../shared/data/mnist.npz            # 3 seeds
python -m benchmarks.forgetting --profile cifar10 --data ../shared/data/cifar10-jpeg.npz   # 2 seeds
python -m benchmarks.forgetting --quick                                                   # digits, 1 seed
"""
