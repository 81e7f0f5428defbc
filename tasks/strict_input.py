"""The base of every model a user fills in: flow parameters, their nested settings, drill files.

Pydantic ignores unknown keys by default, so a typo changed behaviour without a word: `dryrun`
left `dry_run` false and a prune deleted for real, `keep_dayly` kept one daily snapshot instead
of thirty, `delet: false` still replicated deletes. Refusing unknown keys makes every such typo an
error that names the key and where it sits (``params.policy.keep_dayly``) before anything runs.
Results and reports the project writes itself stay lenient, so a newer field in an old record
still reads. Blocks (blocks/) stay Prefect's own: their documents are saved and loaded by the
server, and the UI's forms cannot add a key.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictInput(BaseModel):
    """A model of user input: an unknown key is an error naming it."""

    model_config = ConfigDict(extra="forbid")
