"""The monitor's URLs; ``carrot.urls`` is what a project includes."""

from django.urls import path

from carrot.monitor import (
    assets,
    dead_letter_actions,
    dead_letters,
    metrics,
    overview,
    schedule_views,
    statistics,
    task_actions,
    task_views,
)

app_name = "carrot"

urlpatterns = [
    path("", overview.overview, name="index"),
    path("statistics/", statistics.task_statistics, name="statistics"),
    path("metrics", metrics.queue_metrics, name="metrics"),
    path("dead-letters/", dead_letters.dead_letter_list, name="dead_letters"),
    path(
        "dead-letters/<str:queue>/redrive/",
        dead_letter_actions.dead_letter_redrive,
        name="dead_letter_redrive",
    ),
    path(
        "dead-letters/<str:queue>/delete/",
        dead_letter_actions.dead_letter_delete,
        name="dead_letter_delete",
    ),
    path("tasks/<slug:slug>/", task_views.task_list, name="tasks"),
    path("tasks/<slug:slug>/bulk/", task_actions.bulk_action, name="bulk"),
    path("tasks/<slug:slug>/bulk/question/", task_actions.bulk_question, name="bulk_question"),
    path("counts/", task_views.tab_counts, name="counts"),
    path("task/<uuid:pk>/", task_views.task_detail, name="task"),
    path("task/<uuid:pk>/requeue/", task_actions.task_requeue, name="requeue"),
    path("task/<uuid:pk>/delete/", task_actions.task_delete, name="delete"),
    path("task/<uuid:pk>/cancel/", task_actions.task_cancel, name="cancel"),
    path("queues/<str:name>/purge/", task_actions.queue_purge, name="purge"),
    path("schedules/", schedule_views.schedule_list, name="schedules"),
    path("schedules/new/", schedule_views.schedule_create, name="schedule_create"),
    path("schedules/preview/", schedule_views.schedule_preview, name="schedule_preview"),
    path("schedules/<int:pk>/", schedule_views.schedule_edit, name="schedule_edit"),
    path("schedules/<int:pk>/delete/", schedule_views.schedule_delete, name="schedule_delete"),
    path("schedules/<int:pk>/toggle/", schedule_views.schedule_toggle, name="schedule_toggle"),
    path("schedules/<int:pk>/run/", schedule_views.schedule_run, name="schedule_run"),
    path("assets/<str:version>/<str:name>", assets.asset, name="asset"),
]
