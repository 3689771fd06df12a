"""The bench as a plan of jobs: running them (in process, ``--jobs``, submitit, SLURM), their states, the checks
before any work, the doctor, and the study of repeated searches."""
