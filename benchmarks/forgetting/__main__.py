from benchmarks.forgetting.cli import main

main()
