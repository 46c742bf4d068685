"""One module per `kubetune` subcommand; each exposes a click command named `command`."""
