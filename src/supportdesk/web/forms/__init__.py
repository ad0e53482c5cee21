"""Forms check the shape of input (types, lengths, no NUL bytes); rules stay in services."""
