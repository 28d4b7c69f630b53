from onybench.cli import main

main()
