"""The path of a run: the controller, the only writer of what is observed (stage, serving
instance, error), drives each Space's instances toward what its owner asked for."""
