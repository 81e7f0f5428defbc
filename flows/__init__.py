"""One module per pipeline; each flow composes tasks into a DAG and reports artifacts and events."""
