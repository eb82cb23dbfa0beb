"""`python -m densenet_deploy.cli ...` runs `dnx ...`."""

from densenet_deploy.cli.main import main

main()
