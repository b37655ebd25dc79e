"""Between the command line and the Trainer: which directory a run owns (run_dirs), continuing
a run (resume_command_line before Hydra composes, resume after), and the resolvers Hydra's
configs name (resolvers). The commands and nntrain's SLURM launcher share it."""
