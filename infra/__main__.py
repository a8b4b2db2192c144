"""`python -m infra ...` is the `leadscore` command."""

from infra.cli import main

main()
