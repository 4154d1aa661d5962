from femtogpt.cli import cli

cli()
