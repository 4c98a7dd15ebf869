"""Step 1 of the data path: the avatar service's Control API."""
