"""Step 3 of the data path: decoded frames, streams and the shared A/V clock."""
