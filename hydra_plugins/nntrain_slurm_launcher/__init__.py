"""nntrain's SLURM launcher (hydra/launcher=slurm): hydra-submitit-launcher's, subclassed so that
a time limit or preemption requeues a job to continue from its last.pt, a job that ends without a
result does not end the sweep, and resume= takes a job or a sweep (see slurm_launcher.py).

Hydra imports this package when it scans for plugins on every start of `nntrain`: it imports
only Hydra (and hydra-submitit-launcher where the cluster extra is installed); submitit itself
is imported when a sweep is launched.
"""
