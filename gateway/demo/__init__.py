"""`anxin demo`: a simulated home against a local broker, on embedded defaults."""
