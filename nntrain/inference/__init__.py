"""Running a trained model: the one inference path (logits over a loader with the run's
precision, memory layout and test-time augmentation), metrics over its outputs, and rebuilding
a model from a checkpoint."""
