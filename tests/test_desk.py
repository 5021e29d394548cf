"""`fraud desk`: its login, its figures, its book of alerts on the real broker, and the fraud team working a
live stream's queue in a real browser (Debian's chromium driven by Selenium)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prometheus_client import generate_latest

from jobs import cli
from jobs.core.errors import ConfigError
from jobs.core.metrics import StreamMetrics
from jobs.core.waiting import wait_until
from jobs.desk import desk_cmd
from jobs.desk.access import Access, secret_from_environment
from jobs.desk.app import in_words, serve
from jobs.desk.book import AlertBook, UnknownAlert
from jobs.desk.charts import CHARTS, Sampler, charts_html, prometheus_series, svg
from jobs.desk.health import parse, quantile
from jobs.desk.requirement import daily_counts, daily_figures, verdict
from jobs.dev.kafka_broker import free_port
from jobs.kafka_tools.produce import produce, raw_lines, without_labels
from jobs.simulation.simulate import simulate_to_folder
from jobs.simulation.simulator import make_spec
from jobs.stream import score_stream
from tests.test_ingest_stream import produce as produce_values
from tests.test_stream_restart import register_model

SECRET = "correct horse battery"
# where the browser test also keeps its screenshots, when set (the README's come from there)
SCREENSHOTS = os.environ.get("DESK_SCREENSHOTS")


def test_a_login_needs_a_user_name_and_the_secret_and_a_cookie_cannot_be_forged(make_cfg, monkeypatch, capsys):
    access = Access(SECRET)
    assert access.login("alice", "wrong one") is None
    assert access.login("alice; drop", SECRET) is None  # not a user name
    cookie = access.login("alice", SECRET)
    assert cookie and access.user(cookie) == "alice"
    forged = cookie[:-4] + ("AAAA" if not cookie.endswith("AAAA") else "BBBB")
    assert access.user(forged) is None and access.user(None) is None and access.user("garbage") is None
    token = access.form_token(cookie)
    assert access.form_ok(cookie, token)
    altered = token[:-1] + ("1" if token.endswith("0") else "0")  # one hex digit changed (the cookie's date varies it)
    assert not access.form_ok(cookie, None) and not access.form_ok(cookie, altered)
    assert not access.form_ok(Access("another secret").login("alice", "another secret"), token)
    assert Access(SECRET, session_hours=-1).user(Access(SECRET, session_hours=-1).login("bob", SECRET)) is None

    monkeypatch.delenv("FRAUD_DESK_SECRET", raising=False)
    with pytest.raises(ConfigError, match="FRAUD_DESK_SECRET must hold the desk's shared secret.*found nothing"):
        secret_from_environment(make_cfg())
    assert cli.main(["desk", "--port", str(free_port())]) == 2  # the command refuses to start without it
    assert "desk.login_variable: the environment variable FRAUD_DESK_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("FRAUD_DESK_SECRET", "short")
    with pytest.raises(ConfigError, match="found 5 characters"):
        secret_from_environment(make_cfg())
    with pytest.raises(
        ConfigError, match="desk.requirement_days: expected a whole number of days of 1 or more, found 0"
    ):
        make_cfg(desk__requirement_days=0)


def test_a_day_settles_once_its_alerts_are_reviewed_and_its_disputes_are_due():
    counts = pd.DataFrame(
        [
            # day, transactions, alerts, reviewed, confirmed, false alerts, disputes
            (dt.date(2018, 5, 1), 1000, 60, 60, 49, 11, 1),
            (dt.date(2018, 5, 2), 1000, 50, 40, 30, 10, 0),
            (dt.date(2018, 5, 9), 1000, 40, 40, 20, 20, 0),
        ],
        columns=["day", "transactions", "alerts", "reviewed", "confirmed", "false_alerts", "disputes"],
    )
    days = daily_figures(counts, dt.datetime(2018, 5, 9, 12), settle_days=7)
    first, second, last = days.to_dict("records")
    assert first["settled"] and first["why_not"] == ""
    assert first["recall"] == pytest.approx(49 / 50) and first["fpr"] == pytest.approx(11 / 950)
    assert first["precision"] == pytest.approx(49 / 60)
    assert not second["settled"] and second["why_not"] == "10 alerts not reviewed; disputes until 2018-05-10"
    assert second["fpr"] == pytest.approx(20 / 970)  # the 10 unreviewed count as false alerts until reviewed
    assert not last["settled"] and last["why_not"] == "disputes until 2018-05-17"
    answer = verdict(days)
    assert answer["days"] == 1 and answer["recall"] == pytest.approx(0.98) and answer["meets"] is False
    assert verdict(daily_figures(counts.iloc[:0], None, 7)) == {"days": 0, "recall": None, "fpr": None, "meets": None}


def blocked_card_tables(cfg: Any, spark: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hand-made `scores`, `alerts` and `labels` in `cfg`'s lake, for the blocked-card rule; returns the
    scores and the labels."""
    t = dt.datetime(2018, 5, 1, 10)
    h = dt.timedelta(hours=1)
    scores = pd.DataFrame(
        [  # id, card, event time, flagged
            (1, 7, t, True),
            (11, 7, t + h, False),  # at the block's own event time: made before the label came
            (2, 7, t + 3 * h, False),  # after the block
            (3, 8, t, True),
            (12, 8, t + 5 * h, False),  # after a block that a later label corrected: still blocked
            (4, 9, t, False),
            (5, 9, t, True),
            (13, 10, t + 2 * h, False),  # after a block by a label written before `event_clock` was
            (6, 10, t + dt.timedelta(days=1), False),
        ],
        columns=["transaction_id", "customer_id", "tx_datetime", "decision"],
    )
    scores = scores.assign(
        kafka_timestamp=scores["tx_datetime"],
        tx_date=scores["tx_datetime"].dt.date,
        score=scores["decision"].astype(float),
        threshold=0.5,
        alert_reason=scores["decision"].map({True: "score", False: None}),
    )
    labels = pd.DataFrame(
        [  # id, card, label, batch, offset, event time of the transaction, the stream's clock when it came
            (1, 7, 1, 1, 0, t, t + h),
            (3, 8, 1, 1, 1, t, t + h),
            (3, 8, 0, 2, 2, t, t + 2 * h),  # corrected to genuine
            (4, 9, 1, 3, 3, t, t + dt.timedelta(days=1)),  # disputed
            (6, 10, 1, 3, 4, t + h, None),  # no clock: its transaction's time
        ],
        columns=["transaction_id", "customer_id", "tx_fraud", "batch_id", "offset", "tx_datetime", "event_clock"],
    )
    labels["labelled_at"] = labels["event_clock"].fillna(labels["tx_datetime"])
    spark.createDataFrame(scores).write.format("delta").partitionBy("tx_date").save(cfg.table_path("scores"))
    spark.createDataFrame(scores[scores["decision"]].assign(alerted_at=t)).write.format("delta").save(
        cfg.table_path("alerts")
    )
    spark.createDataFrame(labels).write.format("delta").save(cfg.table_path("labels"))
    return scores, labels


def test_the_days_are_counted_from_scores_and_the_last_label_blocked_cards_left_out(spark, make_cfg):
    cfg = make_cfg()
    scores, _ = blocked_card_tables(cfg, spark)
    t = scores["tx_datetime"].min()
    counts, newest = daily_counts(spark, cfg)
    assert newest == t + dt.timedelta(days=1)
    first = counts.iloc[0].to_dict()
    assert {
        k: int(first[k])
        for k in ("transactions", "alerts", "reviewed", "confirmed", "false_alerts", "disputes", "left_out")
    } == {
        "transactions": 5,
        "alerts": 3,
        "reviewed": 2,
        "confirmed": 1,
        "false_alerts": 1,
        "disputes": 1,
        "left_out": 3,
    }
    # card 9's dispute blocks it only from its label's time on: transaction 5 came before and counts
    # the last day only (desk.requirement_days): the days before it are not read
    counts, newest = daily_counts(spark, cfg, days=1)
    assert newest == t + dt.timedelta(days=1)
    assert counts["day"].tolist() == [dt.date(2018, 5, 2)] and counts["transactions"].tolist() == [0]
    assert counts["left_out"].tolist() == [1]


def test_the_desk_the_demo_and_the_backtest_leave_out_the_same_payments_of_blocked_cards(spark, make_cfg):
    from jobs.replay import demo, figures

    cfg = make_cfg()
    scores, labels = blocked_card_tables(cfg, spark)
    expected = {2, 12, 13, 6}
    counts, _ = daily_counts(spark, cfg)
    assert int(counts["left_out"].sum()) == len(expected)
    truth = dict.fromkeys(scores["transaction_id"].tolist(), 0) | {1: 1, 3: 0, 4: 1, 6: 1}
    lines = demo.results(spark, cfg, truth, dt.datetime(2018, 1, 1), 0.5)
    assert f"left out: {len(expected)} payments of 4 cards" in "\n".join(lines)
    frauds = labels[labels["tx_fraud"] == 1]
    confirmed = dict(zip(frauds["transaction_id"], frauds["event_clock"].fillna(frauds["tx_datetime"])))
    left = figures.blocked(scores, confirmed, pd.Series(dtype="datetime64[ns]"))
    assert set(scores.loc[left.to_numpy(), "transaction_id"]) == expected


def test_the_stream_health_is_read_from_its_prometheus_exposition():
    metrics = StreamMetrics()
    for seconds in (0.5, 1.5, 2.5):
        metrics.batch_seconds.observe(seconds)
    for seconds in [0.2] * 98 + [4.0, 4.0]:
        metrics.latency.observe(seconds)
    metrics.lag.set(42)
    metrics.budget_spent.set(0.031)
    metrics.budget_target.set(0.045)
    metrics.model.info({"alias": "champion", "version": "3", "threshold": "0.5"})
    health = parse(generate_latest(metrics.registry).decode())
    assert health["batches"] == 3 and health["batch_seconds_mean"] == pytest.approx(1.5)
    assert health["lag"] == 42 and health["budget_spent"] == pytest.approx(0.031)
    assert health["model"]["version"] == "3"
    assert health["latency_p50"] is not None and health["latency_p50"] <= 0.25
    assert health["latency_p99"] is not None and health["latency_p99"] > 1
    assert quantile([(1.0, 0), (float("inf"), 0)], 0.5) is None
    assert quantile([(1.0, 10), (2.0, 20), (float("inf"), 20)], 0.75) == pytest.approx(1.5)


def test_an_alert_s_top_features_read_as_sentences():
    assert in_words("terminal_risk_7d=0.5 (+1.234)") == (
        "share of known frauds at the terminal in the 7 day(s) ending "
        "at the label delay (0 when it had no transaction): 0.5 "
        "(raised the score by 1.234 in log-odds)"
    )
    assert in_words("something_else=3") == "something_else=3"


def alert_message(transaction_id: int, terminal_id: int, reason: str = "score", score: float = 0.9) -> bytes:
    """An alert as the stream writes it to the alerts topic."""
    return json.dumps(
        {
            "alert_id": f"a-{transaction_id}",
            "transaction_id": transaction_id,
            "customer_id": transaction_id % 7,
            "terminal_id": terminal_id,
            "tx_datetime": "2018-04-01T10:00:05.000Z",
            "tx_amount": 12.5,
            "score": score,
            "threshold": 0.5,
            "model_version": "1",
            "top_features": ["tx_amount=12.5 (+0.100)"],
            "alert_reason": reason,
            "alerted_at": f"2026-12-03T10:00:{transaction_id % 60:02d}.000Z",
        }
    ).encode()


def labels_on(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    found = [json.loads(r.value) for r in consumer]
    consumer.close()
    return found


def test_the_book_forgets_what_is_older_than_its_window(make_cfg):
    clock = [1_000_000.0]
    book = AlertBook(make_cfg(), hours=1, now=lambda: clock[0])
    book._take(book.topics["alerts"], alert_message(1, 40), clock[0] - 10)
    book._take(book.topics["alerts"], alert_message(2, 40), clock[0] - 7200)  # read at start, then too old
    book._take(book.topics["labels"], b'{"transaction_id": 1, "tx_fraud": 1}', clock[0] - 5)
    book._take(book.topics["labels"], b'{"transaction_id": 9, "tx_fraud": 1}', clock[0] - 7200)  # a dispute
    book._take(book.topics["labels"], b'{"transaction_id": 3, "tx_fraud": 7}', clock[0])  # not a label: left out
    book._take(book.topics["alerts"], b"[1, 2]", clock[0])  # not an alert: left out
    book.forget_old()
    assert set(book.alerts) == {1} and set(book.decisions) == {1}
    assert book.open_alerts() == []
    clock[0] += 7200
    book.forget_old()
    assert not book.alerts and not book.decisions


def test_an_alert_is_open_at_once_and_its_explanation_replaces_it_when_it_arrives(make_cfg):
    book = AlertBook(make_cfg(), hours=1, now=lambda: 1_000_000.0)
    first = json.loads(alert_message(5, 40))
    book._take(book.topics["alerts"], json.dumps({**first, "top_features": []}).encode(), 999_990.0)
    assert [a["top_features"] for a in book.open_alerts()] == [[]]
    book._take(book.topics["alerts"], alert_message(5, 40), 999_991.0)  # the same alert, explained
    assert book.open_alerts() == [first]


def test_the_stream_page_charts_the_last_hours_from_the_stream_s_own_endpoint():
    metrics = StreamMetrics()
    clock = [1_000.0]
    sampler = Sampler("unused", hours=1, every=15, clock=lambda: clock[0])
    for seconds in (2.0, 4.0):  # two micro-batches of 3 s on average
        metrics.batch_seconds.observe(seconds)
    for seconds in [1.0] * 99 + [30.0]:
        metrics.latency.observe(seconds)
    metrics.budget_spent.set(0.02)
    metrics.budget_target.set(0.045)
    metrics.lag.set(40)
    sampler.take(generate_latest(metrics.registry).decode())
    assert sampler.series()["batch_seconds"] == [], "one read gives no difference yet"
    clock[0] += 15
    metrics.batch_seconds.observe(9.0)  # the only micro-batch between the two reads
    metrics.latency.observe(2.0)
    metrics.budget_spent.set(0.03)
    sampler.take(generate_latest(metrics.registry).decode())
    series = sampler.series()
    assert series["batch_seconds"] == [(1_015.0, 9.0)]
    assert series["budget_spent"] == [(1_015.0, 0.03)] and series["budget_target"] == [(1_015.0, 0.045)]
    assert series["lag"] == [(1_015.0, 40.0)] and 1.0 < series["latency_p99"][0][1] <= 2.5  # of that read's one
    clock[0] += 15
    sampler.take(None)  # the endpoint did not answer: a gap, and the next read starts afresh
    sampler.take(generate_latest(StreamMetrics().registry).decode())
    assert len(sampler.series()["batch_seconds"]) == 1
    chart = svg(series["budget_spent"] + [(1_030.0, 0.04)], "budget", "{:.2%}", target=series["budget_target"])
    assert chart.count("<polyline") == 2 and ">4.00%<" in chart and "at most 4.50%; the last 15 s" in chart
    assert "<circle" in svg([(1.0, 2.0)], "one read", "{:.1f} s") and "no data yet" in svg([], "lag", "{:,.0f}")
    assert len(charts_html(series)) == len(CHARTS)


@pytest.mark.integration
def test_the_stream_page_charts_come_from_prometheus_when_it_runs(tmp_path):
    from tests.monitoring import prometheus

    metrics = StreamMetrics()
    port = metrics.serve(0)
    metrics.budget_spent.set(0.03)
    metrics.lag.set(12)
    with prometheus(tmp_path / "prometheus", free_port(), [f"127.0.0.1:{port}"]) as server:
        server.wait_for("fraud_alert_budget_spent")
        for count in range(1, 4):  # micro-batches between scrapes, for the rates
            metrics.batch_seconds.observe(2.0)
            server.wait_for(f"fraud_batch_duration_seconds_count == {count}")
        series = wait_until(
            lambda: (lambda s: s if s["batch_seconds"] else None)(prometheus_series(server.url, 1)),
            "Prometheus to have a micro-batch rate",
            30,
            1,
        )
    assert series["budget_spent"][-1][1] == 0.03 and series["lag"][-1][1] == 12
    assert series["batch_seconds"][-1][1] == pytest.approx(2.0)
    with pytest.raises(OSError):
        prometheus_series(f"http://127.0.0.1:{free_port()}", 1, timeout=2)


@pytest.mark.integration
def test_the_book_decides_a_terminal_case_at_once_and_a_decision_only_once(broker, stream_cfg, topic_names):
    cfg = stream_cfg()
    produce_values(
        broker.bootstrap_servers,
        topic_names["alerts"],
        [
            alert_message(1, 40, "terminal_case"),
            alert_message(2, 40, "terminal_case"),
            alert_message(3, 41),
            alert_message(4, 40, "score", 0.99),
            b"not an alert",
            alert_message(1, 40, "terminal_case"),
        ],
    )  # a copy
    book = AlertBook(cfg).start()
    try:
        wait_until(
            lambda: book.caught_up.is_set() and len(book.open_alerts()) == 4, "the book to read 4 alerts", 30, 0.2
        )
        assert [a["transaction_id"] for a in book.open_alerts("riskiest")][0] == 4
        assert sorted(a["transaction_id"] for a in book.open_cases()[40]) == [1, 2]
        assert sorted(book.decide_case(40, 1, "carol")) == [1, 2]
        decision, sent = book.decide(1, 0, "dave")  # decided already: nothing sent, the first decision stands
        assert not sent and (decision.tx_fraud, decision.decided_by) == (1, "carol")
        with pytest.raises(UnknownAlert, match="transaction 99: no alert of it"):
            book.decide(99, 1, "carol")
        with pytest.raises(UnknownAlert, match="terminal 41: no open case there"):
            book.decide_case(41, 1, "carol")
        assert sorted(a["transaction_id"] for a in book.open_alerts()) == [3, 4]
        sent_labels = labels_on(broker.bootstrap_servers, topic_names["labels"])
        assert sorted((m["transaction_id"], m["tx_fraud"], m["decided_by"], m["terminal_id"]) for m in sent_labels) == [
            (1, 1, "carol", 40),
            (2, 1, "carol", 40),
        ]
        assert all(
            m["tx_datetime"] == "2018-04-01 10:00:05" and m["decided_at"].endswith("+00:00") for m in sent_labels
        )
        # a label from elsewhere (`fraud label`) closes an alert too
        produce_values(broker.bootstrap_servers, topic_names["labels"], [b'{"transaction_id": 3, "tx_fraud": 0}'])
        wait_until(
            lambda: [a["transaction_id"] for a in book.open_alerts()] == [4], "the label to close alert 3", 30, 0.2
        )
    finally:
        book.stop()


def chrome() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)


def next_page(driver: Any, act: Callable[[], Any]) -> None:
    """Does what leads to another page (a click on a form's button) and returns once the browser shows that page:
    a click returns when the event is sent, before the form's answer arrives."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")
    act()
    wait = WebDriverWait(driver, 30)
    wait.until(expected_conditions.staleness_of(old))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def post(url: str, body: str, cookie: str | None) -> int:
    """The status of a POST made outside the browser (a forged form)."""
    request = urllib.request.Request(
        url, data=body.encode(), method="POST", headers={"Cookie": f"fraud_desk={cookie}"} if cookie else {}
    )
    try:
        with urllib.request.urlopen(request) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def snapshot(driver: Any, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / name))
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, Path(SCREENSHOTS) / name)


@pytest.mark.integration
def test_the_fraud_team_works_a_live_stream_s_queue_in_a_browser(
    spark, broker, stream_cfg, topic_names, tmp_path, monkeypatch
):
    from selenium.webdriver.common.by import By

    raw = tmp_path / "raw"
    simulate_to_folder(make_spec("handbook", days=4, customers=300, terminals=150), raw)
    metrics = StreamMetrics()
    cfg = stream_cfg(
        desk__stream_metrics_url=f"http://127.0.0.1:{metrics.serve(0)}/metrics", desk__chart_sample_seconds=1
    )
    register_model(cfg.get("mlflow.tracking_uri"), tmp_path / "artifacts")
    monkeypatch.setenv("FRAUD_DESK_SECRET", SECRET)
    query = score_stream.start(spark, cfg, metrics=metrics)
    app, book = desk_cmd.build(cfg, spark)
    port = free_port()
    stop = serve(app, "127.0.0.1", port, in_thread=True)
    desk = f"http://127.0.0.1:{port}"
    driver = chrome()
    try:
        produce(cfg, without_labels(raw_lines(raw)))
        wait_until(lambda: len(book.open_alerts()) >= 3, "the live stream's alerts on the desk", 240, query=query)

        driver.get(desk + "/")  # the login first
        assert driver.current_url.startswith(desk + "/login")
        driver.find_element(By.ID, "user").send_keys("alice")
        driver.find_element(By.ID, "secret").send_keys(SECRET)
        next_page(driver, driver.find_element(By.ID, "login").click)
        rows = driver.find_elements(By.CSS_SELECTOR, "#queue tr[id^=alert-]")
        assert len(rows) >= 3
        snapshot(driver, tmp_path, "desk-queue.png")
        first, second, third = (int(r.get_attribute("id").removeprefix("alert-")) for r in rows[:3])

        # fraud from the queue, genuine from the alert's page
        next_page(driver, driver.find_element(By.CSS_SELECTOR, f"#alert-{first} button.fraud").click)
        assert str(first) in driver.find_element(By.ID, "done").text
        assert not driver.find_elements(By.ID, f"alert-{first}")
        driver.get(f"{desk}/alerts/{second}")
        assert driver.find_elements(By.CSS_SELECTOR, "#features li")
        next_page(driver, driver.find_element(By.ID, "genuine").click)
        assert not driver.find_elements(By.ID, f"alert-{second}")

        # a second decision on the first alert, with the session's own token: nothing sent again
        driver.get(f"{desk}/alerts/{third}")
        token = driver.find_element(By.NAME, "token").get_attribute("value")
        driver.execute_script(f"""const f = document.createElement('form'); f.method = 'post';
            f.action = '/alerts/{first}'; f.innerHTML = '<input name="token" value="{token}">' +
            '<input name="decision" value="genuine">'; document.body.appendChild(f); f.submit();""")
        wait_until(lambda: driver.find_elements(By.ID, "already"), "the page saying it was decided already", 10, 0.2)
        assert (
            "fraud" in driver.find_element(By.ID, "decision").text
            and "alice" in driver.find_element(By.ID, "decision").text
        )
        # an unknown alert, a forged form (no token), no login: refused, nothing changed
        driver.get(f"{desk}/alerts/123456789012")
        assert "no alert of it" in driver.find_element(By.ID, "error").text
        driver.get(f"{desk}/alerts/x1")
        assert "expected a whole number" in driver.find_element(By.ID, "error").text
        cookie = driver.get_cookie("fraud_desk")["value"]
        assert post(f"{desk}/alerts/{third}", "decision=fraud", cookie) == 403
        assert post(f"{desk}/alerts/{third}", f"decision=maybe&token={token}", cookie) == 400
        assert post(f"{desk}/alerts/{third}", f"decision=fraud&token={token}", None) == 401

        labels = wait_until(lambda: labels_on(broker.bootstrap_servers, topic_names["labels"]), "the labels", 30)
        assert sorted((m["transaction_id"], m["tx_fraud"], m["decided_by"]) for m in labels) == sorted(
            [(first, 1, "alice"), (second, 0, "alice")]
        )
        alerts = {a["transaction_id"]: a for a in book.alerts.values()}
        assert all(m["customer_id"] == alerts[m["transaction_id"]]["customer_id"] for m in labels)

        # the stream records both with who decided and when
        def recorded() -> Any:
            table = spark.read.format("delta").load(cfg.table_path("labels")).toPandas()
            return [table] if len(table) == 2 else None

        table = wait_until(recorded, "the two decisions in the stream's labels table", 120, query=query)[0]
        assert sorted(zip(table["transaction_id"], table["tx_fraud"], table["decided_by"])) == sorted(
            [(first, 1, "alice"), (second, 0, "alice")]
        )
        assert table["decided_at"].notna().all()

        driver.get(desk + "/requirement")
        days = driver.find_elements(By.CSS_SELECTOR, "#days tr")
        assert len(days) >= 2 and driver.find_elements(By.CSS_SELECTOR, "#chart svg")
        assert "not yet" in driver.find_element(By.ID, "days").text  # disputes still due: nothing settled
        assert driver.find_element(By.ID, "budget").text.endswith("%")
        snapshot(driver, tmp_path, "desk-requirement.png")
        driver.get(desk + "/stream")
        assert driver.find_element(By.ID, "lag").text != ""
        # the last hours as charts, from the desk's own reads of the stream's endpoint (every second here)
        wait_until(
            lambda: driver.refresh() or len(driver.find_elements(By.CSS_SELECTOR, "#charts polyline")) >= 2,
            "the stream page's charts to have two reads",
            30,
            1,
        )
        assert len(driver.find_elements(By.CSS_SELECTOR, "#charts svg")) == 4
        assert "the stream's endpoint" in driver.find_element(By.ID, "chart-source").text
        snapshot(driver, tmp_path, "desk-stream.png")
    finally:
        driver.quit()
        stop()
        book.stop()
        query.stop()
