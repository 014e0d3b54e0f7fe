from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from demo import tasks


@require_http_methods(["GET", "POST"])
def home(request):
    """Show buttons that publish the demo tasks."""
    if request.method == "POST":
        action = request.POST.get("task")
        if action == "add":
            log = tasks.add.delay(2, 3)
        elif action == "fail":
            log = tasks.fail.delay()
        elif action == "log":
            log = tasks.log_demo.delay()
        elif action == "slow":
            log = tasks.slow.delay(seconds=15)
        elif action == "report":
            log = tasks.report.delay(42, password="hunter2")
        else:
            messages.error(request, "Unknown demo task.")
            return redirect("home")
        messages.success(request, f"Published {log.task} ({log.uuid}).")
        return redirect("home")
    return render(request, "demo/home.html")
