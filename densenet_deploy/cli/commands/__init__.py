"""One module per `dnx` command, each exposing `command`; heavy imports stay inside the functions."""
