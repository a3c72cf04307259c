"""The virtual subject's signal model (pure numpy), shared by live and offline use."""
