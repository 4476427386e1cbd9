"""The worker's shared context (``streams/worker/context.py``): what it reports of the Faust app."""

from __future__ import annotations

from streams.settings import Settings
from streams.worker.context import faust_app, tables_ready


def test_tables_ready_only_once_recovered_and_not_while_recovering_again(tmp_path):
    """``foresight_tables_ready``: 0 until Faust's table recovery has completed, 1 after, and 0
    again while a rebalance's recovery reads the changelogs (a real Faust app's own flags)."""
    app = faust_app(Settings(data_dir=str(tmp_path)))
    assert tables_ready(app) == 0.0  # started, not recovered yet
    app.tables.recovery.completed.set()
    assert tables_ready(app) == 1.0
    app.in_recovery = True  # (Recovery._set_recovery_started, at an assignment)
    assert tables_ready(app) == 0.0
    app.in_recovery = False
    app.rebalancing = True
    assert tables_ready(app) == 0.0
    app.rebalancing = False
    assert tables_ready(app) == 1.0
