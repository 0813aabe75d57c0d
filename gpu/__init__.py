"""Pure inference and model-file knowledge; imports nothing from the floors above."""
