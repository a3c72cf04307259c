"""What `record` and `replay` print: a few progress lines in a log, and a next step that fits."""

from __future__ import annotations

from types import SimpleNamespace

from bci_app.session.record import RecordingLoop, next_step_hint


def test_hint_names_train_and_evaluate():
    hint = next_step_hint("runs/held", n_markers=200, n_trials=200)
    assert "bci-app train --data session:runs/held" in hint
    assert "bci-app evaluate --bundle" in hint and "--data session:runs/held" in hint


def test_hint_says_plainly_when_there_are_no_markers():
    hint = next_step_hint("runs/calib", n_markers=0, n_trials=0)
    assert "no markers" in hint and "bci-app train" not in hint
    hint = next_step_hint("runs/calib", n_markers=12, n_trials=0)
    assert "--marker-pattern" in hint and "bci-app train" not in hint


def test_progress_in_a_log_is_a_few_lines(tmp_path, capsys):
    source = SimpleNamespace(ch_names=["Cz"], sfreq=512.0, samples_lost=0)
    loop = RecordingLoop(source, source, tmp_path / "s", trials=600)
    for i in range(601):  # one status call per step, as the headless loop does
        loop.n_trials = i
        loop.print_status(tty=False)
    lines = capsys.readouterr().out.splitlines()
    assert 5 <= len(lines) <= 11, lines
    assert lines[-1].split("|")[2].strip().startswith("0 markers, 600/600 trials")



def test_replay_prints_a_line_per_tenth(capsys):
    from bci_app.session.commands import _print_replay_progress

    class Player:  # each poll pushes 1 s of a 10 s session with 20 markers
        sfreq, n_times, marker_strings = 100.0, 1000, ["stim/a"] * 20
        n_pushed = n_markers_pushed = 0

    player = Player()

    class Done:
        @staticmethod
        def wait(_timeout):
            if player.n_pushed >= player.n_times:
                return True
            player.n_pushed += 100
            player.n_markers_pushed += 2
            return False

    player.done = Done()
    _print_replay_progress(player, poll_s=0.0)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "replay: 10 % (1 s of 10 s, 2 of 20 markers)"
    assert lines[-1].startswith("replay: 100 %") and len(lines) == 10
