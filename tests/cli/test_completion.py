"""Shell completion lists the choices of an enum-typed key (Hydra's own offers only the current value)."""
from __future__ import annotations

import os
import subprocess

from distspike.cli.completion import choice_matches

from test_train_cli import command


def test_choice_keys_complete_to_their_members():
    assert choice_matches("distspike-train training.rule=") == ["training.rule=sgd", "training.rule=fsgd"]
    assert choice_matches("distspike-train -m training.backward_reset=r") == ["training.backward_reset=random"]
    assert choice_matches("distspike-train logging.tracker=") == [f"logging.tracker={t}" for t in
                                                                  ("none", "mlflow", "tensorboard")]
    assert choice_matches("distspike-train placement.strategy=") == [
        f"placement.strategy={s}" for s in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")]


def test_other_words_are_left_to_hydra():
    for line in ("distspike-train training.eta=", "distspike-train routing=", "distspike-train train",
                 "distspike-train training.rule=sgd ", "distspike-train nosuch.key=", ""):
        assert choice_matches(line) is None, line


def test_the_command_answers_a_bash_completion_query(tmp_path):
    def query(line: str) -> str:
        env = {**os.environ, "COMP_LINE": line, "COMP_POINT": str(len(line))}
        res = subprocess.run(command() + ["-sc", "query=bash"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()
    assert query("distspike-train model.dtype=") == "model.dtype=float32 model.dtype=float64 model.dtype=int"
    assert query("distspike-train training.steps=") == "training.steps=10"  # Hydra's answer: the current value
