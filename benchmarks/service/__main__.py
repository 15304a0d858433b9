from benchmarks.service.cli import main

main()
