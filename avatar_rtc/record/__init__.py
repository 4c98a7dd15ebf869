"""Step 4 of the data path: recording to a file."""
