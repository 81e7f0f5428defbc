"""One module per pipeline; each flow composes tasks into a DAG and reports artifacts and events."""

from flows.heartbeat_thread import install as _return_when_work_ends

_return_when_work_ends()  # every flow run returns when its work ends (see flows/heartbeat_thread.py)
