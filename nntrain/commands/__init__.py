"""The console scripts: nntrain (train.py), nntrain-eval (evaluate.py), nntrain-predict
(predict.py), nntrain-export (export.py), nntrain-lr-find (lr_find.py). Each starts in entry.py
(Ctrl-C handled from its first line), composes its Hydra config, builds what it needs and hands
over; no training or inference logic lives here. Nothing is imported here: entry.py must be
reached before anything slow is."""
