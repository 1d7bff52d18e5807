"""The command line (``python main.py <command>``): parsers and renderers over the engine."""
