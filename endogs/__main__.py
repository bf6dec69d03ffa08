from endogs.cli import entry

entry()
