"""Database expressions the models and the metrics share (here, so neither imports the other)."""

from django.db.models import FloatField, Func


class SecondsBetween(Func):
    """Seconds from one timestamp to another, in the database's own arithmetic.

    Django's duration arithmetic on SQLite calls a Python function per row, which takes
    seconds over a long history; julianday() and EXTRACT(EPOCH ...) are native.
    """

    output_field = FloatField()
    template = "EXTRACT(EPOCH FROM (%(end)s - %(start)s))"

    def as_sql(self, compiler, connection, template=None, **extra):
        (start, start_params), (end, end_params) = (
            compiler.compile(expression) for expression in self.get_source_expressions()
        )
        sql = (template or self.template) % {"start": start, "end": end}
        return sql, [*end_params, *start_params]

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(
            compiler,
            connection,
            # Rounded to the millisecond, so that 10 s is not 10.000001 s past a bucket.
            template="ROUND((julianday(%(end)s) - julianday(%(start)s)) * 86400.0, 3)",
        )
