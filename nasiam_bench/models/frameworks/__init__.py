"""SSL frameworks, one module each, registered in ``FRAMEWORKS`` on import."""
