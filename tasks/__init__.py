"""Units of work: thin Prefect tasks over plain, typed logic that tests call without a server."""
