"""An embedded emulator of the avatar service: Control API, WHEP and a synthetic talking avatar."""
