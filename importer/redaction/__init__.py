"""The one place that removes secrets from text leaving the app.

Every message that reaches a person or another system (chunk and execution errors, Assets'
`failureReason`, admin messages, log lines, exports) goes through `redact`. It removes:

* the secrets we know: a source's tokens and keys (`secrets_of`), and Basic credentials built
  from them, however a server escaped them when it echoed them (percent-encoded in either
  case, JSON's escapes as PHP or .NET write them, HTML entities);
* the shapes secrets take in text we did not write: `Basic <base64>` and `Bearer <token>`
  values, the values of credential-bearing headers and parameters (`Authorization: ...`,
  `"X-API-Key": "..."`, `api_key=...`), credentials in a URL (`https://user:pass@host`) and
  the token in a webtrigger path (`/webtrigger/7/<token>/`).

Structured settings (headers, parameters, URLs) are masked with `MASK`, which `restore_masked`
and `restore_url` turn back into the stored value when a form or a file is saved, so a
masked value never overwrites a secret.
"""

from importer.redaction.masks import (
    mask_secret_values,
    mask_setting,
    mask_url,
    restore_masked,
    restore_url,
    userinfo_of,
)
from importer.redaction.names import (
    MASK,
    PUBLIC_HEADERS,
    declared_secret_params,
    is_secret_name,
    secret_param_names,
    secret_paths,
)
from importer.redaction.sources import (
    hidden_from_messages,
    keys_under_undeclared_names,
    params_hidden_from_viewers,
    redact_for,
    secrets_of,
    undeclared_keys_warning,
    username_holds_a_key,
)
from importer.redaction.text import (
    MIN_SECRET_LENGTH,
    SECRET_PREFIX_LENGTH,
    redact,
    remember_secrets,
    secret_forms,
    secrets_in_use,
)

__all__ = [
    "userinfo_of",
    "MASK",
    "MIN_SECRET_LENGTH",
    "PUBLIC_HEADERS",
    "SECRET_PREFIX_LENGTH",
    "declared_secret_params",
    "hidden_from_messages",
    "is_secret_name",
    "secret_paths",
    "keys_under_undeclared_names",
    "mask_secret_values",
    "mask_setting",
    "mask_url",
    "params_hidden_from_viewers",
    "redact",
    "redact_for",
    "remember_secrets",
    "restore_masked",
    "restore_url",
    "secret_forms",
    "secret_param_names",
    "secrets_in_use",
    "secrets_of",
    "undeclared_keys_warning",
    "username_holds_a_key",
]
