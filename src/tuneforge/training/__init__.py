"""Training: the fit loop, its tested maths, optimisers, freezing and checkpoints."""
