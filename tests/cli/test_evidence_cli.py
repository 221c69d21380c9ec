"""The evidence verbs as a user runs them: `fairwatch audit seal | verify | prove | check |
witness` on a chDB store, with keys in 0600 files as `fairwatch.contracts.keys` writes them.
Exit codes as documented (0 ok, 1 findings, 2 usage), failures as one `error:` line, and no
secret key in any output."""

import json
import shutil
from contextlib import closing
from pathlib import Path

import pytest

from fairwatch.contracts.keys import generate_key, write_signing_key
from fairwatch.sim.scenario import load_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.sim.writers import write_jsonl
from fairwatch.store.clickhouse import open_store
from fairwatch.store.migrations import migrate
from fairwatch.stream.replay import replay
from fairwatch.testing.cli_runs import invoke, one_error
from fairwatch.testing.stack import INSERT_EVENT

OPERATOR, WITNESS, OTHER = generate_key("operator"), generate_key("witness.example/w1"), generate_key("w2")
# the whole key text and its base64 secret alone (which may itself hold "+": split from the left)
SECRETS = [key.text() for key in (OPERATOR, WITNESS, OTHER)] + [key.text().split("+", 4)[4]
                                                                for key in (OPERATOR, WITNESS, OTHER)]
# settings a developer's shell may hold, unset so that each command sees only what the test gives
UNSET = {name: None for name in (
    "FAIRWATCH_CLICKHOUSE", "FAIRWATCH_EVIDENCE_KEY", "FAIRWATCH_EVIDENCE_KEY_FILE", "FAIRWATCH_EVIDENCE_VERIFIER",
    "FAIRWATCH_EVIDENCE_DIR", "FAIRWATCH_EVIDENCE_ORIGIN", "FAIRWATCH_WITNESS_KEY", "FAIRWATCH_WITNESS_KEY_FILE",
    "FAIRWATCH_WITNESS_STATE", "FAIRWATCH_DEBUG")}


def fairwatch(*args, env=None):
    """Run one command; every output is checked for the secret keys."""
    result = invoke(*args, env={**UNSET, **(env or {})})
    for secret in SECRETS:
        assert secret not in result.stdout and secret not in result.stderr, args
    return result




@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("sim")
    return write_jsonl(simulate(load_scenario("default"), seed=8, events=300), out)


@pytest.fixture
def keys(tmp_path):
    folder = tmp_path / "keys"
    folder.mkdir()
    return {"operator": write_signing_key(OPERATOR, folder / "operator.key"),
            "witness": write_signing_key(WITNESS, folder / "witness.key"),
            "other": write_signing_key(OTHER, folder / "other.key")}


@pytest.fixture
def store_url(files, tmp_path):
    """A chDB store with replayed evidence, closed (the commands open it themselves)."""
    url = f"chdb://{tmp_path / 'store'}"
    with closing(open_store(url)) as store:
        migrate(store)
        replay(store, files["events"], files["outcomes"])
    return url


@pytest.fixture
def sealed(store_url, keys, tmp_path):
    outside = tmp_path / "checkpoints"
    result = fairwatch("audit", "seal", "--store", store_url, "--key-file", keys["operator"], "--checkpoints", outside)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("sealed ")
    return store_url, outside


def _verify(url, outside, *more):
    return fairwatch("audit", "verify", "--store", url, "--key", OPERATOR.verifier.text(), "--checkpoints", outside,
                     *more)


def _one_event(url):
    with closing(open_store(url, create=False)) as store:
        return store.query_values("SELECT event_id FROM match_events FINAL ORDER BY event_id LIMIT 1 OFFSET 5")[0][0]


def test_seal_then_verify_is_ok_and_an_edited_row_is_named(sealed):
    url, outside = sealed
    result = _verify(url, outside)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stdout.splitlines()[-1].endswith(": ok") and result.stderr == ""
    event_id = _one_event(url)
    with closing(open_store(url, create=False)) as store:  # a later insert of the key supersedes the row
        store.execute(
            f"{INSERT_EVENT} SELECT event_id, occurred_at, occurred_at_us, deployment, algorithm, mode, score,"
            " threshold, if(decision = 'match', 'non_match', 'match'), subject_keys, subject_values, reference_keys,"
            " reference_values, context, ingested_at + 1, cluster_id FROM match_events WHERE event_id = %(e)s",
            {"e": event_id})
    tampered = _verify(url, outside)
    assert tampered.exit_code == 1, (tampered.stdout, tampered.stderr)
    edited = [line for line in tampered.stdout.splitlines() if line.startswith("EDITED ")]
    assert len(edited) == 1 and f"match_events (event_id={event_id}) differs" in edited[0]
    assert tampered.stdout.splitlines()[-1].endswith(": TAMPERED"), tampered.stdout
    as_json = json.loads(_verify(url, outside, "--json").stdout)
    assert not as_json["ok"] and as_json["findings"][0]["row"] == f"match_events (event_id={event_id})", as_json


def test_verify_with_nothing_to_verify_is_an_error(tmp_path):
    url = f"chdb://{tmp_path / 'empty'}"
    with closing(open_store(url)) as store:
        migrate(store)
    result = fairwatch("audit", "verify", "--store", url, "--key", OPERATOR.verifier.text())
    one_error(result, 1, "nothing to verify")
    assert result.stdout == ""


def test_prove_and_check_round_trip_offline_and_a_wrong_key_fails(sealed, tmp_path):
    url, _ = sealed
    event_id = _one_event(url)
    bundle = tmp_path / "bundle.json"
    proved = fairwatch("audit", "prove", event_id, "--store", url, "--out", bundle)
    assert proved.exit_code == 0, proved.stderr
    assert json.loads(bundle.read_text())["row"] == f"match_events (event_id={event_id})"
    checked = fairwatch("audit", "check", bundle, "--key", OPERATOR.verifier.text())
    assert checked.exit_code == 0, checked.stderr
    assert checked.stdout.startswith(f"ok: match_event/v2 {event_id} is leaf ")
    assert f"by {OPERATOR.key_id}" in checked.stdout.splitlines()[0] and event_id in checked.stdout.splitlines()[1]
    wrong = fairwatch("audit", "check", bundle, "--key", OTHER.verifier.text())
    one_error(wrong, 1, "the bundle's checkpoint does not verify")
    assert wrong.stdout == ""


def test_a_missing_key_is_a_usage_error(store_url, tmp_path, keys):
    one_error(fairwatch("audit", "seal", "--store", store_url), 2, "no signer key")
    one_error(fairwatch("audit", "verify", "--store", store_url), 2, "no verifier key")
    one_error(fairwatch("audit", "check", keys["operator"]), 2, "no verifier key")
    one_error(fairwatch("audit", "witness", "--checkpoints", tmp_path, "--state", tmp_path / "state",
                        "--key", OPERATOR.verifier.text()), 2, "no witness key")
    one_error(fairwatch("audit", "seal", "--store", store_url, "--key-file", tmp_path / "nowhere.key"), 2,
              "cannot read the key file")
    keys["operator"].chmod(0o644)
    one_error(fairwatch("audit", "seal", "--store", store_url, "--key-file", keys["operator"]), 2,
              "can be read by others")


def test_witness_cosigns_verify_counts_the_quorum_and_a_rollback_exits_1(sealed, keys, tmp_path):
    url, outside = sealed
    old = tmp_path / "old-checkpoints"
    shutil.copytree(outside, old)
    state = tmp_path / "witness-state"
    witness_args = ("audit", "witness", "--checkpoints", outside, "--key", OPERATOR.verifier.text(), "--state", state)
    done = fairwatch(*witness_args, "--key-file", keys["witness"])
    assert done.exit_code == 0, (done.stdout, done.stderr)
    lines = done.stdout.splitlines()
    assert lines[-1] == f"witnessed {len(lines) - 1} logs as {WITNESS.key_id}: ok"
    assert all(": cosigned size " in line for line in lines[:-1]) and len(lines) >= 3
    assert len(list(outside.glob("*/*.witness.example%2Fw1.cosigned"))) == len(lines) - 1
    witnessed = _verify(url, outside, "--witness", WITNESS.verifier.text(), "--quorum", "1")
    assert witnessed.exit_code == 0 and witnessed.stdout.splitlines()[-1].endswith(": ok"), witnessed.stdout
    assert ", cosigned by 1 witnesses" in witnessed.stdout
    short = _verify(url, outside, "--witness", WITNESS.verifier.text(), "--witness", OTHER.verifier.text())
    assert short.exit_code == 1 and short.stdout.splitlines()[-1].endswith(": UNWITNESSED"), short.stdout
    assert sum(line.startswith("UNWITNESSED ") and "has 1 of the 2 witness cosignatures" in line
               for line in short.stdout.splitlines()) == len(lines) - 1
    one_error(_verify(url, outside, "--witness", WITNESS.verifier.text(), "--quorum", "2"), 2, "quorum of 2 of 1")

    # the store grows; the witness (key from the environment this time) cosigns the new checkpoint
    event_id = _one_event(url)
    with closing(open_store(url, create=False)) as store:
        store.execute(
            f"{INSERT_EVENT} SELECT concat(event_id, '-new'), occurred_at, occurred_at_us, deployment,"
            " algorithm, mode, score, threshold, decision, subject_keys, subject_values, reference_keys,"
            " reference_values, context, now(), cluster_id FROM match_events WHERE event_id = %(e)s", {"e": event_id})
        deployment = store.query_values("SELECT deployment FROM match_events WHERE event_id = %(e)s",
                                        {"e": event_id})[0][0]
    assert fairwatch("audit", "seal", "--store", url, "--key-file", keys["operator"], "--checkpoints",
                     outside).exit_code == 0
    assert _verify(url, outside, "--witness", WITNESS.verifier.text()).exit_code == 1  # the newest is not witnessed
    grown = fairwatch(*witness_args, "--json", env={"FAIRWATCH_WITNESS_KEY_FILE": str(keys["witness"])})
    assert grown.exit_code == 0, grown.stderr
    origin = f"fairwatch/deployment/{deployment}"
    report = {w["origin"]: w for w in json.loads(grown.stdout)["origins"]}
    new_size = report[origin]["size"]
    assert new_size == report[origin]["previous_size"] + 1 and report[origin]["refused"] is None
    assert _verify(url, outside, "--witness", WITNESS.verifier.text()).exit_code == 0

    # the checkpoint directory as it was before: a rollback, refused, exit 1 naming the log and sizes
    rolled_back = fairwatch("audit", "witness", "--checkpoints", old, "--key", OPERATOR.verifier.text(), "--state",
                            state, "--key-file", keys["witness"])
    assert rolled_back.exit_code == 1, (rolled_back.stdout, rolled_back.stderr)
    refused = [line for line in rolled_back.stdout.splitlines() if line.startswith("REFUSED ")]
    assert refused == [f"REFUSED {origin}: rollback: the newest checkpoint has size {new_size - 1}, smaller than "
                       f"size {new_size} that this witness cosigned"]
    assert rolled_back.stdout.splitlines()[-1].endswith(": REFUSED")


def test_the_witness_key_must_not_be_the_logs(sealed, keys, tmp_path):
    _, outside = sealed
    result = fairwatch("audit", "witness", "--checkpoints", outside, "--key", OPERATOR.verifier.text(), "--state",
                       tmp_path / "state", "--key-file", keys["operator"])
    one_error(result, 2, "a witness needs its own key")


def test_verify_with_a_keyring_rechecks_the_sites_signatures(sealed, tmp_path):
    """The replayed store holds no signed input: a keyring that requires gate-a's input to be signed
    makes each of its stored events unbacked; one that requires nothing finds nothing."""
    url, outside = sealed
    site = generate_key("gate-a-site").verifier.text()
    strict, lax = tmp_path / "strict.yaml", tmp_path / "lax.yaml"
    strict.write_text(f"keyring_version: 1\ndeployments:\n  gate-a:\n    keys:\n      - key: {site}\n")
    lax.write_text(f"keyring_version: 1\ndeployments:\n  gate-a:\n    require_signatures: false\n"
                   f"    keys:\n      - key: {site}\n")
    with closing(open_store(url, create=False)) as store:
        gate_a = store.query_values("SELECT count() FROM match_events FINAL WHERE deployment = 'gate-a'")[0][0]
    refused = _verify(url, outside, "--keyring", strict)
    assert refused.exit_code == 1, (refused.stdout, refused.stderr)
    unbacked = [line for line in refused.stdout.splitlines() if line.startswith("PROVENANCE row_unbacked: match_events")]
    assert len(unbacked) == gate_a > 0
    assert refused.stdout.splitlines()[-1].endswith(": FAILED")
    accepted = _verify(url, outside, "--keyring", lax)
    assert accepted.exit_code == 0, (accepted.stdout, accepted.stderr)
    last = accepted.stdout.splitlines()[-1]
    assert last.startswith("signed input: 0 of 0 stored messages verify") and last.endswith(": ok"), last
    assert "PROVENANCE" not in accepted.stdout


def test_verify_without_outside_checkpoints_warns_that_a_rollback_cannot_be_seen(sealed):
    url, _ = sealed
    result = fairwatch("audit", "verify", "--store", url, "--key", OPERATOR.verifier.text())
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stdout.splitlines()[-1].endswith(": ok")
    assert result.stderr.startswith("warning: no --checkpoints: ") and len(result.stderr.splitlines()) == 1
