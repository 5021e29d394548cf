"""Run by Airflow's own interpreter (.tools/airflow/bin/python), not by pytest: loads the DAG folder with
Airflow's DagBag and prints, as JSON, its import errors and each DAG's schedule and tasks, with every bash
command rendered twice: with no Variable set (the defaults) and with the Variables given as JSON in argv[2].

    .tools/airflow/bin/python tests/airflow_probe.py DAG_FOLDER '{"fraud_master": "k8s://..."}'
"""

from __future__ import annotations

import json
import sys
from typing import Any

import jinja2
from airflow.dag_processing.dagbag import DagBag


class Values:
    """What `var.value` is in a task's template: .get(name, default), and attributes."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def __getattr__(self, name: str) -> str:
        return self.values[name]


def render(template: str, values: dict[str, str]) -> str:
    return jinja2.Template(template, undefined=jinja2.StrictUndefined).render(var={"value": Values(values)})


def main() -> None:
    folder, variables = sys.argv[1], json.loads(sys.argv[2])
    bag = DagBag(dag_folder=folder)
    out: dict[str, Any] = {"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()}, "dags": {}}
    for dag_id, dag in sorted(bag.dags.items()):
        tasks = {}
        for task in dag.tasks:
            command = getattr(task, "bash_command", None)
            tasks[task.task_id] = {
                "operator": type(task).__name__,
                "upstream": sorted(task.upstream_task_ids),
                "trigger_rule": str(
                    task.trigger_rule.value if hasattr(task.trigger_rule, "value") else task.trigger_rule
                ),
                "retries": task.retries,
                "retry_delay_seconds": task.retry_delay.total_seconds(),
                "timeout_seconds": task.execution_timeout.total_seconds() if task.execution_timeout else None,
                "command_defaults": render(command, {}) if command else None,
                "command_with_variables": render(command, variables) if command else None,
            }
        out["dags"][dag_id] = {
            "schedule": getattr(dag.timetable, "expression", None) or str(dag.timetable),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "tasks": tasks,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
