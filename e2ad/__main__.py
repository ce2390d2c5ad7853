from e2ad.cli import main

main()
