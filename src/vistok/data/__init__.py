"""Image input, sample data and the protocol's geometry."""
