"""The Azure Functions app (Python v2 model): a table of triggers. The work lives in `exporter/`."""
import azure.functions as func

from exporter import triggers

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

QUEUE = "%EXPORT_QUEUE_NAME%"
STORAGE = "AzureWebJobsStorage"


@app.timer_trigger(schedule="0 * * * * *", arg_name="timer", run_on_startup=False, use_monitor=True)
def scheduler(timer: func.TimerRequest) -> None:
    """Every minute: queue one export job per integration with a due window."""
    triggers.on_timer()


@app.queue_trigger(arg_name="message", queue_name=QUEUE, connection=STORAGE)
def export_worker(message: func.QueueMessage) -> None:
    """Export an integration's due windows, oldest first."""
    triggers.on_export_job(message)


@app.queue_trigger(arg_name="message", queue_name=QUEUE + "-poison", connection=STORAGE)
def export_poison(message: func.QueueMessage) -> None:
    """A job that failed maxDequeueCount times: record it in the run history."""
    triggers.on_poison(message)


@app.route(route="ucd/{account}/upsert", methods=["POST"])
def ucd_upsert(req: func.HttpRequest) -> func.HttpResponse:
    return triggers.http("ucd/{account}/upsert", req)


@app.route(route="ucd/{account}/users/{user_id}", methods=["DELETE"])
def ucd_user(req: func.HttpRequest) -> func.HttpResponse:
    return triggers.http("ucd/{account}/users/{user_id}", req)


@app.route(route="ucd/{account}/catalog", methods=["GET"])
def ucd_catalog(req: func.HttpRequest) -> func.HttpResponse:
    return triggers.http("ucd/{account}/catalog", req)


@app.route(route="accounts/{account}/integrations/verify", methods=["POST"])
def integrations_verify(req: func.HttpRequest) -> func.HttpResponse:
    return triggers.http("accounts/{account}/integrations/verify", req)


@app.route(route="accounts/{account}/integrations", methods=["GET", "POST"])
def integrations(req: func.HttpRequest) -> func.HttpResponse:
    return triggers.http("accounts/{account}/integrations", req)


@app.route(route="accounts/{account}/integrations/{id}", methods=["GET", "PATCH", "DELETE"])
def integration(req: func.HttpRequest) -> func.HttpResponse:
    return triggers.http("accounts/{account}/integrations/{id}", req)


@app.route(route="accounts/{account}/integrations/{id}/pause", methods=["POST"])
def integration_pause(req: func.HttpRequest) -> func.HttpResponse:
    return triggers.http("accounts/{account}/integrations/{id}/pause", req)


@app.route(route="accounts/{account}/integrations/{id}/resume", methods=["POST"])
def integration_resume(req: func.HttpRequest) -> func.HttpResponse:
    return triggers.http("accounts/{account}/integrations/{id}/resume", req)


@app.route(route="accounts/{account}/integrations/{id}/runs", methods=["GET"])
def integration_runs(req: func.HttpRequest) -> func.HttpResponse:
    return triggers.http("accounts/{account}/integrations/{id}/runs", req)


@app.route(route="accounts/{account}/integrations/{id}/replay", methods=["POST"])
def integration_replay(req: func.HttpRequest) -> func.HttpResponse:
    return triggers.http("accounts/{account}/integrations/{id}/replay", req)
