"""The composition root: the CLI and (later) the API wire the stages together; nothing imports app."""
