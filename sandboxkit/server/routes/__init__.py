"""The Judge0 API's routes, one router per area, each over the service on ``app.state``
(``_common.Service``): ``submissions`` (single and batch), ``languages`` (and statuses),
``system`` (about, version, configuration, system info), ``health`` (statistics, workers,
metrics) and ``auth``. The application factory (``_app``) includes them all."""
