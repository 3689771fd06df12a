"""The data path: dataset sources -> FFCV .beton files -> two-view SSL loaders and evaluation loaders."""
