"""Forms shared by the admin and the config file importer, so both apply the same rules.

* secrets         write-only secrets and masked settings, for the source and channel forms
* fields          form fields: JSON that says where it is wrong, URLs given with their scheme
* sources         the import source form
* source_fields   the settings each kind, paging and auth uses
* source_masking  the source's secrets shown masked on the form, and put back from it
* source_checks   the checks a source's settings get together
* schedules       the schedule form
"""

from importer.forms.fields import LocatedJSONField, SchemeURLField
from importer.forms.schedules import ScheduleForm, validate_timezone
from importer.forms.secrets import WriteOnlySecretsForm, keep_stored_secrets
from importer.forms.source_fields import (
    AUTH_FIELDS,
    CONNECTION_FIELDS,
    FIELD_CONDITIONS,
    FILE_FIELDS,
    LIMIT_FIELDS,
    MASKED_JSON_FIELDS,
    MASKED_URL_FIELDS,
    PAGING_FIELDS,
    SECRET_FIELDS,
    SOURCE_FIELDS,
)
from importer.forms.sources import ImportSourceForm

__all__ = [
    "AUTH_FIELDS",
    "CONNECTION_FIELDS",
    "FIELD_CONDITIONS",
    "FILE_FIELDS",
    "LIMIT_FIELDS",
    "MASKED_JSON_FIELDS",
    "MASKED_URL_FIELDS",
    "PAGING_FIELDS",
    "SECRET_FIELDS",
    "SOURCE_FIELDS",
    "ImportSourceForm",
    "LocatedJSONField",
    "SchemeURLField",
    "ScheduleForm",
    "WriteOnlySecretsForm",
    "keep_stored_secrets",
    "validate_timezone",
]
