"""Models: plain nn.Modules with explicit constructor arguments.

Every model takes input_shape and num_classes (given by the data set, so the user never
repeats them) plus its own hyperparameters from configs/model/<name>.yaml.
"""
