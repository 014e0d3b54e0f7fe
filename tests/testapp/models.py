from django.db import models


class Effect(models.Model):
    """One row per execution of a test task, counted apart from MessageLog."""

    key = models.CharField(max_length=100, db_index=True)
    pid = models.IntegerField()
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.key
