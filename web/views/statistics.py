"""The statistics page: the organization's figures over a date range, with server-drawn SVG charts."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.errors import SwitchboardError
from history_app.statistics import organization_statistics, parse_range
from web import selectors
from web.access import org_view
from web.charts import bar_list_chart, column_chart


@org_view()
def statistics_page(request: HttpRequest) -> HttpResponse:
    error = None
    try:
        period = parse_range(request.GET.get("since"), request.GET.get("until"))
    except SwitchboardError as exc:
        error, period = exc, parse_range(None, None)
    stats = organization_statistics(request.organization, period)
    days = stats["per_day"]
    labels = [day["date"][5:] for day in days]  # MM-DD
    charts = [
        column_chart(
            "Tokens per day",
            "tokens",
            labels,
            [
                ("prompt tokens", "bar", [d["tokens_in"] for d in days]),
                ("completion tokens", "bar-alt", [d["tokens_out"] for d in days]),
            ],
        ),
        column_chart(
            "Messages per day", "messages", labels, [("messages", "bar", [d["messages"] for d in days])]
        ),
        bar_list_chart(
            "Errors by code",
            "errors",
            sorted(stats["errors"]["by_code"].items()),
            "bar-danger",
            "failed runs",
        ),
        bar_list_chart(
            "Time to approve or reject a tool call",
            "approvals",
            selectors.approval_wait_histogram(period.since, period.until),
            "bar",
            "decisions",
        ),
    ]
    context = {
        "nav": "statistics",
        "stats": stats,
        "charts": charts,
        "error": error,
        "since": period.since.date().isoformat(),
        "until": period.until.date().isoformat(),
    }
    return render(request, "web/statistics.html", context)
