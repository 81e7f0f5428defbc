"""Registry: immutable versions, labels as the replay of the audit log, two writers, the
cached client."""

import threading

import fsspec
import pytest

from tasks.prompt_client import PromptClient
from tasks.prompt_registry import LabelConflict, PromptNotFound, PromptRegistry, RegistryUnavailable


@pytest.fixture(params=["file", "memory"])
def registry(request, tmp_path):
    if request.param == "file":
        yield PromptRegistry(fsspec.filesystem("file"), str(tmp_path / "prompts"))
        return
    fs = fsspec.filesystem("memory")
    root = f"/reg-{tmp_path.name}"
    yield PromptRegistry(fs, root)
    fs.rm(root, recursive=True)


def test_versions_are_numbered_immutable_and_deduplicated(registry):
    v1 = registry.create_version("greet", "Hello {{name}}", params={"temperature": 0}, author="ann", message="first")
    v2 = registry.create_version("greet", "Hi {{name}}", params={"temperature": 0}, author="bob", message="shorter")
    again = registry.create_version("greet", "Hi {{name}}", params={"temperature": 0}, author="bob")
    assert (v1.version, v2.version, again.version) == (1, 2, 2)
    assert v1.content_hash != v2.content_hash and again.content_hash == v2.content_hash
    assert registry.get_version("greet", 1).template == "Hello {{name}}"
    assert registry.get_version("greet", 1).author == "ann"
    assert [v.version for v in registry.versions("greet")] == [1, 2]
    assert registry.prompts() == ["greet"]


def test_labels_move_and_every_move_is_audited(registry):
    registry.create_version("greet", "A {{x}}")
    registry.create_version("greet", "B {{x}}")
    registry.move_label("greet", "production", 1, actor="ann", reason="launch")
    registry.move_label("greet", "candidate", 2, actor="bob", reason="try B")
    registry.move_label("greet", "production", 2, actor="bob", reason="B is better", expected_from=1)
    assert registry.labels("greet") == {"production": 2, "candidate": 2}
    assert registry.resolve("greet@production").template == "B {{x}}"
    assert registry.resolve("greet").version == 2 and registry.resolve("greet@1").version == 1
    log = registry.audit_log("greet")
    assert [(m.label, m.from_version, m.to_version, m.actor, m.reason) for m in log] == [
        ("production", None, 1, "ann", "launch"), ("candidate", None, 2, "bob", "try B"),
        ("production", 1, 2, "bob", "B is better")]
    with pytest.raises(LabelConflict):  # compare-and-swap: production is at 2, not 1
        registry.move_label("greet", "production", 1, actor="eve", reason="stale", expected_from=1)
    assert registry.labels("greet")["production"] == 2
    same = registry.move_label("greet", "production", 2, actor="bob", reason="retry", expected_from=1)
    assert same.seq == 3 and len(registry.audit_log("greet")) == 3  # already there: no new entry


def test_unknown_prompt_version_label_are_specific(registry):
    registry.create_version("greet", "A")
    with pytest.raises(PromptNotFound, match="'nope' does not exist"):
        registry.resolve("nope@production")
    with pytest.raises(PromptNotFound, match="no label 'staging'"):
        registry.resolve("greet@staging")
    with pytest.raises(PromptNotFound, match="no version 7"):
        registry.resolve("greet@7")
    with pytest.raises(PromptNotFound):
        registry.move_label("greet", "production", 9, actor="a", reason="r")


def test_two_writers_never_lose_a_version_or_a_move(registry):
    errors = []

    def writer(who):
        try:
            for i in range(8):
                v = registry.create_version("race", f"{who} {i}", author=who)
                registry.move_label("race", f"l-{who}", v.version, actor=who, reason=str(i))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    versions = registry.versions("race")
    assert [v.version for v in versions] == list(range(1, 25))  # 24 distinct versions, no gap, none lost
    assert len({v.template for v in versions}) == 24
    log = registry.audit_log("race")
    assert [m.seq for m in log] == list(range(1, 25))


def test_rollback_target_is_the_last_known_good_production_version(registry):
    for t in ("A", "B", "C", "D"):
        registry.create_version("p", t)
    registry.move_label("p", "production", 1, actor="ann", reason="launch")
    registry.record_run("p", 1, "nightly-1", True, {})
    assert registry.rollback_target("p", 1) is None  # only the current version ever held production
    registry.move_label("p", "production", 2, actor="ann", reason="promoted")
    registry.record_run("p", 2, "promote-2", True, {})
    registry.move_label("p", "candidate", 3, actor="bob", reason="try")
    registry.record_run("p", 3, "adhoc", True, {})  # an unreviewed candidate's ad-hoc run passed last
    assert registry.rollback_target("p", 2) == 1  # not v3: it never held production
    registry.move_label("p", "production", 4, actor="eve", reason="hotfix without tests")
    assert registry.rollback_target("p", 4) == 2  # the most recent earlier holder that passed
    registry.record_run("p", 2, "adhoc-2", False, {})  # v2's latest run failed: not known good
    assert registry.rollback_target("p", 4) == 1
    registry.record_run("p", 1, "adhoc-1", False, {})
    assert registry.rollback_target("p", 4) is None  # no known good production version: no rollback


def test_rollback_target_skips_untested_and_current_versions(registry):
    for t in ("A", "B", "C"):
        registry.create_version("p", t)
    registry.move_label("p", "production", 1, actor="a", reason="launch")
    registry.record_run("p", 1, "r1", True, {})
    registry.move_label("p", "production", 2, actor="a", reason="never tested")  # no run record
    registry.move_label("p", "production", 3, actor="a", reason="promoted")
    registry.record_run("p", 3, "r3", True, {})
    assert registry.rollback_target("p", 3) == 1  # v2 has no recorded run: not known good
    registry.move_label("p", "production", 1, actor="rollback", reason="back")  # v1 holds it again
    assert registry.rollback_target("p", 1) == 3  # the current version is never its own target


class BrokenFS:
    """A file system whose every call fails as an unreachable store does."""

    def __getattr__(self, name):
        def fail(*a, **k):
            raise ConnectionError("store unreachable")
        return fail


def test_client_serves_cached_copy_when_registry_is_down(registry, tmp_path):
    registry.create_version("greet", "A {{x}}")
    registry.move_label("greet", "production", 1, actor="a", reason="r")
    client = PromptClient(registry, tmp_path / "cache")
    fresh = client.get("greet@production")
    assert not fresh.cached and fresh.version.template == "A {{x}}"
    down = PromptClient(PromptRegistry(BrokenFS(), "/x"), tmp_path / "cache")
    served = down.get("greet@production")
    assert served.cached and served.version == fresh.version
    with pytest.raises(RegistryUnavailable, match="no cached copy"):
        down.get("other@production")
    with pytest.raises(PromptNotFound):  # bad input is never answered from the cache
        client.get("greet@staging")
