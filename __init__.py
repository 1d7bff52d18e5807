"""BalanceLab: train image classifiers on real, class-imbalanced ImageFolder trees.

The installed distribution maps this folder to the single import name ``balancelab``:
``balancelab.engine`` (all logic, no Qt) and ``balancelab.gui`` (the Qt desktop app).
``python main.py`` and the ``balancelab`` command both start :func:`balancelab.main.main`.
"""
__version__ = "0.1.0"
