"""BalanceLab Qt views. All logic lives in ``engine``; these modules only display and dispatch."""
