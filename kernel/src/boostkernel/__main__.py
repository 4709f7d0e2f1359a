from boostkernel.cli import main

main()
