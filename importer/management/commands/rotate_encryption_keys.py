from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from django.db import connection, transaction

from importer.fields import EncryptedTextField, needs_rotation
from importer.management.base import DatabaseCommand


class Command(DatabaseCommand):
    help = (
        "Re-encrypt stored secrets under the first key of FIELD_ENCRYPTION_KEYS. Put the new "
        "key first, run this, then remove the old keys."
    )

    def handle(self, *args, **options):
        try:
            self.rotate_all()
        except ImproperlyConfigured as problem:  # a secret no listed key decrypts
            raise CommandError(f"Nothing was re-encrypted: {problem}") from None

    def rotate_all(self) -> None:
        with transaction.atomic():
            for model in apps.get_app_config("importer").get_models():
                encrypted = [
                    field
                    for field in model._meta.concrete_fields
                    if isinstance(field, EncryptedTextField)
                ]
                if encrypted:
                    rotated = self._rotate(model, encrypted)
                    self.stdout.write(
                        f"Re-encrypted the secrets of {rotated} {model._meta.verbose_name_plural}."
                    )

    @staticmethod
    def _rotate(model, encrypted) -> int:
        """Save again the rows with a secret not under the first key; how many there were."""
        columns = ", ".join(connection.ops.quote_name(field.column) for field in encrypted)
        table = connection.ops.quote_name(model._meta.db_table)
        # The stored (encrypted) values tell which secrets are not under the first key.
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT id, {columns} FROM {table}")  # noqa: S608
            rows = cursor.fetchall()
        rotated = 0
        for pk, *stored in rows:
            stale = [
                field.name
                for field, value in zip(encrypted, stored, strict=True)
                if needs_rotation(value or "")
            ]
            if stale:
                model.objects.get(pk=pk).save(update_fields=stale)
                rotated += 1
        return rotated
