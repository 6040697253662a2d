"""Data preparation run on a laptop or a notebook, never in the image: demo digits, dogImages."""
