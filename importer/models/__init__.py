"""What assets-sync stores, one module per kind of row; every name is re-exported here.

* sources     ImportSource: the Assets import source, the third-party source, the mapping
* executions  Execution and its guarded state transitions (ExecutionQuerySet)
* chunks      ChunkJob and its guarded moves (ChunkJobQuerySet)
* schedules   Schedule
* alerts      NotificationChannel, Alert, Delivery, RunningTotal
* periodic    PeriodicJob
* expressions SecondsBetween, a database expression the models and the metrics share
"""

from importer.models.alerts import Alert, Delivery, NotificationChannel, RunningTotal
from importer.models.chunks import ChunkJob, ChunkJobQuerySet
from importer.models.executions import (
    FAILABLE_STATES,
    FINISHED_STATES,
    OPEN_STATES,
    Execution,
    ExecutionQuerySet,
    ExecutionState,
)
from importer.models.expressions import SecondsBetween
from importer.models.periodic import PeriodicJob, PeriodicJobQuerySet
from importer.models.schedules import Schedule, default_timezone
from importer.models.sources import ImportSource, default_assets_base_url, new_webtrigger_token

__all__ = [
    "FAILABLE_STATES",
    "FINISHED_STATES",
    "OPEN_STATES",
    "Alert",
    "ChunkJob",
    "ChunkJobQuerySet",
    "Delivery",
    "Execution",
    "ExecutionQuerySet",
    "ExecutionState",
    "ImportSource",
    "NotificationChannel",
    "PeriodicJob",
    "PeriodicJobQuerySet",
    "RunningTotal",
    "Schedule",
    "SecondsBetween",
    "default_assets_base_url",
    "default_timezone",
    "new_webtrigger_token",
]
