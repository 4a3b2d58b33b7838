"""The Grafana dashboard and the example Prometheus rules in docs/monitoring, checked with
promtool (Debian's prometheus package): every rule and every panel's PromQL parses, and every
metric they name is one modelyard exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from prometheus_client import generate_latest

from modelyard.metrics import Metrics

DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
METRIC = re.compile(r"\bmodelyard_[a-z_]+\b")


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: install Debian's prometheus package (make test does)"
    return found


def check_rules(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )


def exported() -> str:
    return generate_latest(Metrics().registry).decode()


def names_in(expr: str) -> set[str]:
    return {re.sub(r"_bucket$", "", name) for name in METRIC.findall(expr)}


def test_the_example_rules_pass_promtool() -> None:
    rules = DOCS / "prometheus-rules.yml"
    result = check_rules(rules)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout
    metrics = exported()
    for name in names_in(rules.read_text()):
        assert f"# TYPE {name} " in metrics, name


def test_every_dashboard_panel_parses(tmp_path: Path) -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    targets = [(p["id"], t) for p in dashboard["panels"] for t in p["targets"]]
    assert len(targets) >= 7
    # promtool parses PromQL where it checks rules: each panel's query becomes a recording
    # rule (no Prometheus server, no query, just the parser and its type checks).
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel{pid}_{t['refId']}", "expr": t["expr"]}
                    for pid, t in targets
                ],
            }
        ]
    }
    path = tmp_path / "panels.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    result = check_rules(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(targets)} rules found" in result.stdout
    metrics = exported()
    for _, target in targets:
        for name in names_in(target["expr"]):
            assert f"# TYPE {name} " in metrics, name


def test_promtool_refuses_a_broken_expression(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text(
        json.dumps({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "rate(up[5m]"}]}]})
    )
    assert check_rules(path).returncode != 0  # the check above can fail
