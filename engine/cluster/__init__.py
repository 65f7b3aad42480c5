"""Beyond one machine: SLURM batch scripts and job status. Torch-free."""
