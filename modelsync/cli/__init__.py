"""The command line: the only part of modelsync that prints."""
