"""Export of one window: UCD batches → column plan → CSV bytes → staged blocks → one atomic commit."""
