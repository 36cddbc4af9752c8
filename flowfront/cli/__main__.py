from flowfront.cli import main

main()
