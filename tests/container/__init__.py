"""Container tests: build the image, run train and serve in Docker, push it."""
