"""Step 2 of the data path: WHEP signalling, ICE and the RTP receive pipeline (on aiortc)."""
