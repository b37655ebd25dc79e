"""Data sets. Each module builds one family; every data object answers the same questions:
train/val/test loaders, num_classes, input_shape, class_names (see memory.InMemoryData)."""
