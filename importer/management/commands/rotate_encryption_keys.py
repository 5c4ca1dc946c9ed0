from django.core.management.base import BaseCommand
from django.db import connection, transaction

from importer.fields import EncryptedTextField, needs_rotation
from importer.models import ImportSource


class Command(BaseCommand):
    help = (
        "Re-encrypt stored secrets under the first key of FIELD_ENCRYPTION_KEYS. Put the new "
        "key first, run this, then remove the old keys."
    )

    def handle(self, *args, **options):
        encrypted = [
            field
            for field in ImportSource._meta.concrete_fields
            if isinstance(field, EncryptedTextField)
        ]
        columns = ", ".join(connection.ops.quote_name(field.column) for field in encrypted)
        table = connection.ops.quote_name(ImportSource._meta.db_table)
        rotated = 0
        with transaction.atomic():
            # The stored (encrypted) values tell which secrets are not under the first key.
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT id, {columns} FROM {table}")  # noqa: S608
                rows = cursor.fetchall()
            for pk, *stored in rows:
                stale = [
                    field.name
                    for field, value in zip(encrypted, stored, strict=True)
                    if needs_rotation(value or "")
                ]
                if stale:
                    ImportSource.objects.get(pk=pk).save(update_fields=stale)
                    rotated += 1
        self.stdout.write(f"Re-encrypted the secrets of {rotated} source(s).")
