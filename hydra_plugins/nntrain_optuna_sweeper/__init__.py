"""nntrain's Optuna sweeper: a Hydra Sweeper plugin on Optuna >= 4 (ask/tell).

It replaces hydra-optuna-sweeper, whose newest release pins optuna<3 (broken beside SQLAlchemy 2
and ending the whole search when one trial raises). It is configured like that plugin
(`hydra.sweeper.params` in Hydra's override grammar, `n_trials`, `n_jobs`, `storage`,
`study_name`, a `sampler` node), so `nntrain -m hparams_search=optuna` reads the same.

Hydra imports every public module of this package when it scans for plugins, on every start of
`nntrain` (even `--help`): they import only Hydra and the standard library; Optuna is imported
when a search actually starts.
"""
