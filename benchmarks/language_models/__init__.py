"""Language-model benchmark (issue: Language models): a small byte-level GPT-2 trained on tiny
Shakespeare plus canary documents, then asked to forget some of the canaries; every method against
retraining. ``python -m benchmarks.language_models --data ../shared/data/tinyshakespeare.txt``."""
