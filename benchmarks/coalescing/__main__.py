from benchmarks.coalescing.run import main

main()
