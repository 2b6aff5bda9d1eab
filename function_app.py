"""The Azure Functions app (Python v2 model): a table of triggers. The work lives in `exporter/`.

The HTTP functions are registered from `exporter.routes.ROUTES`, one function per route template,
named after the route so the host's function names (and function keys) stay stable. host.json sets
an empty routePrefix so that the console is at /console; the API routes keep /api by naming it.

The console (`exporter/console/`) is anonymous at the Functions level: App Service Authentication
(infra/) signs users in before a request reaches it, and the console authorizes every request
against the account's members.
"""

import logging

import azure.functions as func

from exporter import egress, routes, triggers
from exporter.console import functions as console

egress.warn_if_private_allowed(logging.getLogger("exporter"))
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

QUEUE = "%EXPORT_QUEUE_NAME%"
STORAGE = "AzureWebJobsStorage"


@app.timer_trigger(schedule="0 * * * * *", arg_name="timer", run_on_startup=False, use_monitor=True)
def scheduler(timer: func.TimerRequest) -> None:
    """Every minute: queue one export job per integration with a due window."""
    triggers.on_timer()


# Also at start: a deployment that predates the due index builds it before its first tick finds nothing
# (an instance starting within 30 minutes of the last sweep skips it: exporter/jobs/sweep.py).
@app.timer_trigger(schedule="0 17 * * * *", arg_name="timer", run_on_startup=True, use_monitor=True)
def due_index_sweep(timer: func.TimerRequest) -> None:
    """Every hour: check the due index against every integration and put right what disagrees."""
    triggers.on_sweep()


@app.queue_trigger(arg_name="message", queue_name=QUEUE, connection=STORAGE)
def export_worker(message: func.QueueMessage) -> None:
    """Export an integration's due windows, oldest first."""
    triggers.on_export_job(message)


@app.queue_trigger(arg_name="message", queue_name=QUEUE + "-poison", connection=STORAGE)
def export_poison(message: func.QueueMessage) -> None:
    """A job that failed maxDequeueCount times: record it in the run history."""
    triggers.on_poison(message)


@app.queue_trigger(arg_name="message", queue_name=QUEUE + "-notify", connection=STORAGE)
def export_notify(message: func.QueueMessage) -> None:
    """Send one notification to the integration's url (signed); retried with backoff for 24 hours."""
    triggers.on_notification(message)


def http_function(route: routes.Route):
    """The handler of one route template; the host passes the request as `req` (the route's arg_name)."""

    def handler(req: func.HttpRequest) -> func.HttpResponse:
        return triggers.http(route, req)

    handler.__name__ = handler.__qualname__ = route.function
    handler.__doc__ = f"{' '.join(route.methods)} /api/{route.template}"
    return handler


for _route in routes.ROUTES:
    app.function_name(name=_route.function)(
        app.route(route=routes.API_PREFIX + _route.template, methods=_route.methods, trigger_arg_name="req")(
            http_function(_route)
        )
    )


@app.function_name(name="console_home")
@app.route(route="console", methods=["GET", "HEAD", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
def console_home(req: func.HttpRequest) -> func.HttpResponse:
    """GET /console: the signed-in user's accounts."""
    return console.handle(req)


@app.function_name(name="console_pages")
@app.route(route="console/{*path}", methods=["GET", "HEAD", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
def console_pages(req: func.HttpRequest) -> func.HttpResponse:
    """Every console page, its forms and its static files under /console/."""
    return console.handle(req)
