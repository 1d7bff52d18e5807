"""The one-click part of the Train tab: the recipe proposed for the open dataset's training split,
a button that trains it, and a button that searches for the best recipe (its live leaderboard
is rendered by :func:`leaderboard_html`)."""
from __future__ import annotations

from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from balancelab.engine.data.scanner import ScanResult
from balancelab.engine.data.splits import SplitError
from balancelab.engine.experiments.recipe import Recipe, RecipeError, recommend
from balancelab.engine.experiments.recipe_search import SCORE_LABEL, SearchRound


class RecipeBox(QGroupBox):
    def __init__(self, parent=None) -> None:
        super().__init__("Balance && train in one click", parent)
        self.recipe: Recipe | None = None
        self.recipe_label = QLabel("Open a dataset to get a proposed recipe.")
        self.recipe_label.setWordWrap(True)
        self.recipe_label.setObjectName("hint")
        self.train_recipe_button = QPushButton("Train the proposed recipe")
        self.train_recipe_button.setObjectName("primary")
        self.search_button = QPushButton("Find the best recipe")
        self.search_button.setToolTip("Successive halving over the registry's strategies on this dataset, within a "
                                      "budget of about 3 full trainings; every run is kept. Stop cancels it.")
        for b in (self.train_recipe_button, self.search_button):
            b.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_recipe_button, 1)
        buttons.addWidget(self.search_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.recipe_label)
        layout.addLayout(buttons)

    def propose(self, result: ScanResult) -> None:
        try:
            self.recipe = recommend(result)
        except (RecipeError, SplitError) as exc:
            self.recipe = None
            self.recipe_label.setText(f"No recipe to propose: {exc}")
        else:
            r = self.recipe
            self.recipe_label.setText(f"<b>Proposed:</b> {r.model}, <b>{r.strategy}</b>, {r.epochs} epochs, batch "
                                      f"{r.batch_size}, {r.image_size} px — {r.reason}.")

    def set_busy(self, busy: bool) -> None:
        for b in (self.train_recipe_button, self.search_button):
            b.setEnabled(self.recipe is not None and not busy)


def leaderboard_html(ev: SearchRound) -> str:
    rows = "".join(f"<tr><td>{c.strategy}</td><td>{c.state}</td><td>{c.epochs}</td>"
                   f"<td>{'' if c.score is None else f'{c.score:.4f}'}</td></tr>" for c in ev.leaderboard)
    return (f"Round {ev.round + 1}/{ev.rounds} (to {ev.target_epochs} epochs; {ev.epochs_used}/"
            f"{ev.epochs_budget} epochs of the budget used) — {SCORE_LABEL}:"
            f"<table cellspacing=6><tr><th align=left>strategy</th><th align=left>state</th>"
            f"<th>epochs</th><th>score</th></tr>{rows}</table>")
