"""The console scripts: nntrain (train.py), nntrain-eval (evaluate.py), nntrain-predict
(predict.py). Each composes its Hydra config, builds what it needs and hands over; no training
or inference logic lives here."""
