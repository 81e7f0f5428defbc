"""The replicate-on-write automation as declared (no server)."""

import uuid

from deployments.automations import OBJECTS_WRITTEN_EVENT, REPLICATE_ON_WRITE, replicate_on_write


def test_replicate_on_write_runs_the_deployment_with_the_event_prefix() -> None:
    deployment_id = uuid.uuid4()
    automation = replicate_on_write(deployment_id)
    assert automation.name == REPLICATE_ON_WRITE
    assert automation.trigger.expect == {OBJECTS_WRITTEN_EVENT}
    assert automation.trigger.threshold == 1
    [action] = automation.actions
    assert action.deployment_id == deployment_id
    assert action.parameters == {"params": {"prefix": "{{ event.payload.prefix }}"}}
