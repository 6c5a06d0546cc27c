"""Rendering on hand-made report documents: escaping, empty sections, the previous run's metrics."""

from __future__ import annotations

import base64
import re

from pipeline_steps.report.render import SECTIONS, render_html


def minimal_doc(**extra: object) -> dict:
    return {
        "run_id": "r<2>",
        "x": 3,
        "evaluation": {"model": {"ndcg": 0.3}, "baseline": {"ndcg": 0.1}, "n_eval_users": 2},
        **extra,
    }


def test_every_section_renders_without_data_and_says_what_is_missing() -> None:
    html = render_html(minimal_doc())
    for section, _ in SECTIONS:
        assert f'<section id="{section}">' in html
    assert "r&lt;2&gt;" in html and "r<2>" not in html  # ids are escaped
    assert "no run records" in html and "no users with held-out items" in html
    assert "no earlier run to compare with" in html and "stage times not shown" in html
    assert "final metrics only" in html
    (png,) = re.findall(r'src="data:image/png;base64,([^"]+)"', html)  # only the metrics bars
    assert base64.b64decode(png).startswith(b"\x89PNG\r\n\x1a\n")
    assert b"Software" not in base64.b64decode(png)  # no tEXt chunk naming matplotlib (and its URL)


def test_previous_run_metrics_come_from_the_evaluation_when_no_run_record_has_them() -> None:
    doc = minimal_doc()
    doc["evaluation"]["published"] = {"run_id": "r0", "metrics": {"ndcg": 0.25}}
    html = render_html(doc)
    assert "previous run r0" in html and "0.2500" in html


def test_notes_are_listed() -> None:
    html = render_html(minimal_doc(notes=["drift: not available (NoSuchKey: gone)"]))
    assert '<section id="notes">' in html and "<li>drift: not available (NoSuchKey: gone)</li>" in html


def test_the_cold_protocols_are_shown_with_their_baselines() -> None:
    assert "cold protocols not run" in render_html(minimal_doc())
    doc = minimal_doc()
    doc["evaluation"]["cold_users"] = {
        "metrics": {"precision": 0.123},
        "baseline": {"precision": 0.0456},
        "n_eval_users": 5,
        "held_out_users": 6,
        "candidates": 40,
    }
    doc["evaluation"]["cold_items"] = {
        "metrics": {"ndcg": 0.789},
        "baseline": {"ndcg": 0.321},
        "random": {"ndcg": 0.0111},
        "n_eval_users": 7,
        "held_out_items": 3,
    }
    html = render_html(doc)
    section = html[html.index('<section id="cold">') :]
    section = section[: section.index("</section>")]
    for text in ("0.1230", "0.0456", "most popular", "0.7890", "0.3210", "0.0111", "category popularity"):
        assert text in section
    assert "5 of 6 held-out users" in section and "the 3 held-out items" in section
