"""Flow artifacts: escaped markdown, valid keys, MLflow UI links, what each summary says.

Markdown is judged as a browser would see it: rendered by markdown-it (CommonMark + tables).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from flows.artifacts import Summary, artifact_key, md
from flows.summaries import DeploymentReport, failure_summary, probe_summary
from mlops.errors import GateFailedError
from mlops.rollout import BlueGreenPolicy, RolloutResult, RolloutStep
from mlops.settings import Settings
from mlops.stages.probe import ProbeResult
from mlops.tracking.links import (
    LOCAL_UI_URL,
    model_version_path,
    run_links,
    run_path,
    ui_base_url,
    ui_url,
)

HOSTILE = "*bold* _it_ `tick` [link](http://evil) <script>x</script> | # h & !"


def _html(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)


def _text(html: str) -> str:
    """What the reader sees: the HTML without tags, entities decoded."""
    import html as html_lib

    return html_lib.unescape(re.sub(r"<[^>]+>", "", html))


def test_escaped_text_renders_exactly_as_written() -> None:
    html = _html(md(HOSTILE))
    for tag in ("<em>", "<strong>", "<code>", "<a ", "<script>", "<h1>"):
        assert tag not in html
    assert _text(html).strip() == HOSTILE


def test_escaped_lines_stay_one_line_and_cannot_start_a_block() -> None:
    html = _html(md("# not a heading\n- not a list\n> not a quote"))
    assert html.startswith("<p>") and "<h1>" not in html and "<ul>" not in html
    assert _text(html).strip() == "# not a heading - not a list > not a quote"


def test_bullets_that_look_like_lists_stay_one_flat_list() -> None:
    items = ["- nested?", "1. numbered?", "+ plus", "= equals", "12) paren", "a-b 2.5"]
    html = _html(Summary("t").bullets(items).render())
    assert html.count("<ul>") == 1 and "<ol" not in html and html.count("<li>") == len(items)
    assert [_text(li) for li in re.findall(r"<li>(.*?)</li>", html)] == items


def test_table_cells_with_pipes_stay_in_their_cell() -> None:
    summary = Summary("t").table(["field", "value"], [["a|b", HOSTILE], ["none", None]])
    html = _html(summary.render())
    cells = re.findall(r"<td>(.*?)</td>", html)
    assert [_text(c) for c in cells] == ["a|b", HOSTILE, "none", "–"]


def test_title_and_fields_are_escaped() -> None:
    summary = Summary("train *x*").fields([("comment", HOSTILE), ("skipped", None)])
    html = _html(summary.render())
    assert "<h1>train *x*</h1>" in html
    assert "skipped" not in html and "<script>" not in html
    assert _text(html).count(HOSTILE) == 1


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        (("taxi", "training"), "taxi-training"),
        (("Taxi_Fares v2", "deployment"), "taxi-fares-v2-deployment"),
        (("--odd..", "batch", "run"), "odd-batch-run"),
        (("ÜBER",), "ber"),
        (("!!!",), "mlops"),
    ],
)
def test_artifact_keys_are_valid_for_prefect(parts: tuple[str, ...], key: str) -> None:
    from prefect.client.schemas.actions import ArtifactCreate

    assert artifact_key(*parts) == key
    assert ArtifactCreate(key=key).key == key  # Prefect's own validation accepts it


def test_ui_links_are_absolute_on_a_tracking_server_without_credentials() -> None:
    uri = "https://alice:s3cret@mlflow.example.com:8443/base/?token=abc"
    assert ui_base_url(uri) == "https://mlflow.example.com:8443/base"
    url = ui_url(uri, run_path("7", "abc123"), local_ui=LOCAL_UI_URL)
    assert url == "https://mlflow.example.com:8443/base/#/experiments/7/runs/abc123"
    assert "s3cret" not in url and "token" not in url


def test_ui_links_of_a_local_store_are_relative_or_on_the_local_ui() -> None:
    uri = "sqlite:////tmp/mlflow.db"
    assert ui_base_url(uri) is None
    assert ui_url(uri, run_path("1", "r1")) == "#/experiments/1/runs/r1"
    assert ui_url(uri, run_path("1", "r1", "plots/a b.png"), local_ui=LOCAL_UI_URL) == (
        "http://127.0.0.1:5000/#/experiments/1/runs/r1/artifacts/plots/a%20b.png"
    )
    assert ui_base_url("postgresql://u:p@db/mlflow") is None


def test_model_version_paths_quote_the_name() -> None:
    assert model_version_path("fares/eu 2", 3) == "#/models/fares%2Feu%202/versions/3"


def test_run_links_find_the_plots_of_a_real_run(settings: Settings, tmp_path: Path) -> None:
    from mlops.tracking import connect

    client = connect(settings)
    experiment_id = client.create_experiment("links")
    run = client.create_run(experiment_id, run_name="train links")
    for name in ("curves.png", "report.html", "numbers.json"):
        (tmp_path / name).write_text("x")
        client.log_artifact(run.info.run_id, str(tmp_path / name), "plots")
    links = run_links(
        client,
        settings.effective_tracking_uri,
        run.info.run_id,
        artifact_dirs=("plots",),
        local_ui=LOCAL_UI_URL,
    )
    base = f"{LOCAL_UI_URL}/#/experiments/{experiment_id}/runs/{run.info.run_id}"
    assert links.url == base and links.run_name == "train links"
    assert links.experiment_name == "links"
    assert links.artifacts == (
        ("plots/curves.png", f"{base}/artifacts/plots/curves.png"),
        ("plots/report.html", f"{base}/artifacts/plots/report.html"),
    )


def test_a_failed_gate_summary_lists_its_reasons() -> None:
    exc = GateFailedError("gate failed: r2 0.1 < 0.3", reasons=["r2 0.1 < 0.3", "rmse *high*"])
    text = _text(_html(failure_summary("train taxi: failed", exc, exc.reasons).render()))
    assert "outcome: failed" in text and "error: gate failed: r2 0.1 < 0.3" in text
    assert "rmse *high*" in text


def _rollout(outcome: str) -> RolloutResult:
    now = time.time()
    return RolloutResult(
        endpoint="taxi-prod",
        model_name="taxi",
        blue_variant="v1",
        blue_version="1",
        green_variant="v2",
        green_version="2",
        policy=BlueGreenPolicy(),
        outcome=outcome,  # type: ignore[arg-type]
        reason="5xx rate 0.2 > 0.01" if outcome == "rolled_back" else "all steps passed",
        alarm="5xx" if outcome == "rolled_back" else None,
        steps=[
            RolloutStep(name="canary 10%", started_at=now, ended_at=now + 8, green_share=10),
            RolloutStep(
                name="all traffic",
                started_at=now + 8,
                ended_at=now + 9,
                green_share=100,
                ok=False,
                detail="5xx | alarm",
            ),
        ],
        started_at=now,
        ended_at=now + 9.5,
        record_run_id="abc",
    )


def test_deployment_summary_shows_approval_and_rollout_steps() -> None:
    report = DeploymentReport(model_name="taxi", version="2", policy=BlueGreenPolicy())
    report.decision, report.approver, report.comment = "approve", "ann", "ok <b>ship</b> it"
    report.prod = _rollout("rolled_back")
    html = _html(report.summary().render())
    text = _text(html)
    assert "deploy taxi v2 → taxi-prod" in text and "outcome: rolled back" in text
    assert "comment: ok <b>ship</b> it" in text and "<b>" not in html
    rows = [
        [_text(c) for c in re.findall(r"<td>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", html, re.S)
    ]
    assert ["canary 10%", "10%", "8.0 s", "yes", "–"] in rows
    assert ["all traffic", "100%", "1.0 s", "no", "5xx | alarm"] in rows


def test_a_deployment_that_stopped_early_says_so() -> None:
    report = DeploymentReport(model_name="taxi", version="2", policy=BlueGreenPolicy())
    assert "did not finish" in _text(_html(report.summary().render()))
    report.error = "endpoint taxi-dev did not start"
    assert "outcome: failed" in _text(_html(report.summary().render()))


def test_probe_summary_raises_the_alarm() -> None:
    result = ProbeResult(
        model_name="taxi",
        endpoint="taxi-prod",
        requests=10,
        successes=5,
        success_rate=0.5,
        latency_p50_ms=3.0,
        latency_max_ms=9.0,
        threshold=0.9,
        alarm=True,
        errors=["HTTP 503 [busy]"],
        run_id="r",
    )
    text = _text(_html(probe_summary(result).render()))
    assert "ALARM" in text and "5/10 (50.0%; alarm below 90.0%)" in text
    assert "HTTP 503 [busy]" in text
