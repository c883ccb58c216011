"""gwstream.models: torch networks, the batched scorer, training and shipped weights."""
