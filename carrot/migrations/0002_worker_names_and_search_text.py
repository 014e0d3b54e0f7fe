"""Worker names gain an instance part; MessageLog gains the masked text search runs on.

Existing rows get their search text here, in batches (a large table takes a while).
"""

from django.db import migrations, models

from carrot.masking import search_text

BATCH = 2000


def fill_search_text(apps, schema_editor):
    MessageLog = apps.get_model("carrot", "MessageLog")
    rows = MessageLog.objects.using(schema_editor.connection.alias).order_by("pk")
    last = 0
    while True:
        batch = list(rows.filter(pk__gt=last).only("pk", "task_args", "task_kwargs")[:BATCH])
        if not batch:
            return
        for row in batch:
            row.search_text = search_text(row.task_args, row.task_kwargs)
        MessageLog.objects.using(schema_editor.connection.alias).bulk_update(
            batch, ["search_text"]
        )
        last = batch[-1].pk


class Migration(migrations.Migration):
    dependencies = [("carrot", "0001_initial")]

    operations = [
        migrations.AlterField(
            model_name="workerheartbeat",
            name="name",
            field=models.CharField(help_text="host:pid:instance", max_length=255, unique=True),
        ),
        migrations.AddField(
            model_name="messagelog",
            name="search_text",
            field=models.TextField(
                blank=True,
                default="",
                editable=False,
                help_text="the arguments as the monitor searches them, with secrets masked",
            ),
        ),
        migrations.RunPython(fill_search_text, migrations.RunPython.noop, elidable=True),
    ]
