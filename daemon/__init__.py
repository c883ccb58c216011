"""gwstream.daemon: processes, sockets, CLI, configuration and supervision."""
