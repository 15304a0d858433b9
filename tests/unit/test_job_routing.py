"""Which queue a model's jobs go to (app.jobs.service.device_class_for, app.queue); that a worker of
one queue takes only its jobs is tests/integration/test_device_classes.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.jobs.service import device_class_for
from app.queue import celery_app, housekeeping_queue, job_queue, job_queues
from app.settings import get_settings


@pytest.mark.parametrize(
    ("device_class", "parameters", "expected"),
    [
        ("auto", 3_658, "cpu"),  # the tests' cnn_small
        ("auto", 999_999, "cpu"),
        ("auto", 1_000_000, "gpu"),  # UNLEARND_CPU_MAX_PARAMETERS' default: below it, cpu
        ("auto", 11_183_582, "gpu"),  # resnet18 at its default width
        ("auto", None, "gpu"),  # registered before sizes were recorded: where every job went before
        ("gpu", 3_658, "gpu"),  # the model's own setting wins
        ("cpu", 11_183_582, "cpu"),
    ],
)
def test_a_jobs_device_class_comes_from_its_model(device_class, parameters, expected):
    assert get_settings().cpu_max_parameters == 1_000_000
    model = SimpleNamespace(device_class=device_class, parameter_count=parameters)
    assert device_class_for(model) == expected


def test_queue_names():
    assert (
        job_queues("unlearnd") == ["unlearnd.gpu", "unlearnd.cpu"] == [job_queue("unlearnd", c) for c in ("gpu", "cpu")]
    )
    assert housekeeping_queue("unlearnd") not in job_queues("unlearnd")
    with pytest.raises(ValueError):
        job_queue("unlearnd", "tpu")
    # a worker started without -Q serves the gpu queue
    assert celery_app().conf.task_default_queue == job_queue(get_settings().queue_name, "gpu")
