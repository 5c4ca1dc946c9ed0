"""The schema-and-mapping document: checking it, turning records into chunks, drafting, comparing.

Assets answers a bad mapping or a badly typed value late (at PUT, or while PROCESSING, long after
the chunk left). Everything here runs locally first so the user sees the problem with a JSON path,
or the record and field, before anything is sent.

* document    the vocabulary (attribute types) and how to read types and mappings
* validation  `validate_document`: problems with their JSON paths;
              `split_newer_rules`: which of them a mapping stored earlier imports with
* coercion    values converted to attribute types, or refused with a reason
* transform   `transform_records`: records into the data chunk of one page;
              `identity_digests`: what names its records, in short;
              `fields_in_no_record`: what the mapping reads and no record holds;
              `first_left_out`: a nested selector's first item left out, from its counts
* draft       `draft_mapping`: a document inferred from sample records
* diff        `diff_documents`: local against remote, in words
* table       `mapping_table`: the mapping at a glance
"""

from importer.mapping.diff import diff_documents
from importer.mapping.document import (
    ATTRIBUTE_TYPES,
    ID_LIKE_FIELDS,
    INVALID_VALUES_MODES,
    MISSING_IDENTITY_MODES,
    MappingProblem,
    line_of,
)
from importer.mapping.draft import draft_mapping
from importer.mapping.table import mapping_table
from importer.mapping.transform import (
    ITEMS_THAT_TELL_A_RENAME,
    InvalidValuesError,
    MissingIdentityError,
    RecordsRefused,
    TransformResult,
    fields_in_no_record,
    first_left_out,
    identity_digests,
    transform_records,
)
from importer.mapping.validation import split_newer_rules, validate_document

__all__ = [
    "line_of",
    "ATTRIBUTE_TYPES",
    "ID_LIKE_FIELDS",
    "ITEMS_THAT_TELL_A_RENAME",
    "INVALID_VALUES_MODES",
    "MISSING_IDENTITY_MODES",
    "InvalidValuesError",
    "MappingProblem",
    "MissingIdentityError",
    "RecordsRefused",
    "TransformResult",
    "diff_documents",
    "draft_mapping",
    "fields_in_no_record",
    "first_left_out",
    "identity_digests",
    "mapping_table",
    "split_newer_rules",
    "transform_records",
    "validate_document",
]
