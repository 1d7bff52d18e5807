"""BalanceLab engine: all logic, no Qt. The CLI and the GUI both call into this package."""
