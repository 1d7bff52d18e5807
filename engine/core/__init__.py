"""Bottom layer: typed events and stop tokens, atomic writes, BalanceLab's own folders, metrics."""
