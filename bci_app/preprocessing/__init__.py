"""Signal processing shared by the live epocher and the offline data-set loaders."""
