"""Training Deep-Z models from z-stack pairs."""
