"""The staff UI, one module per page family; importing this package registers them all.

* display     badges, masked secrets and progress bars shared by the pages
* sources     import sources: the form by kind and the actions
* executions  the execution history, the live execution page, cancel and retry
* schedules   schedules kept in sync with Assets
* audit       the audit log
"""

from importer.admin import audit, executions, schedules, sources  # noqa: F401  (registers)
from importer.admin.display import state_badge
from importer.notifications import admin as notifications_admin  # noqa: F401  (registers)

__all__ = ["state_badge"]
