"""The lowest layer: what every other layer may use (registries and errors, atomic files, figures, processes and
devices, seeds, optimisers, schedules, progress, the machine's description). It imports no other layer."""
