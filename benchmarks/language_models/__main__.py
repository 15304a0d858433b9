from benchmarks.language_models.cli import main

main()
