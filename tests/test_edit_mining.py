"""What the reviewers' edits teach (``stats --edits``): fields changed and from which value to which, what
free-text edits add and remove, and suggestions that, applied, become a live override version the next
request's domain sees."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, UTC

import pytest
import yaml
from conftest import mw_feedback, run_cli

from rag_middleware.learning import edits
from rag_middleware.errors import RequestError, UnknownDomainError
from rag_middleware.learning.feedback import Feedback
from rag_middleware.records import Attempt, Interaction

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def claim(claim_type: str, department: str, severity: str = "low", **kw) -> dict:
    return {"claim_type": claim_type, "severity": severity, "channel": kw.get("channel", "email"),
            "injury_reported": False, "department": department, "policy_number": None, "amount_claimed": None}


def listing(*filters: tuple[str, str, int], city: str | None = None) -> dict:
    return {"listing_type": "apartment", "deal": "rent", "city": city,
            "filters": [{"field": f, "op": op, "value": v} for f, op, v in filters],
            "max_age_days": None, "sort": None, "limit": None}


def planted(mw, domain: str, question: str, before, after, *, minute: int, reviewer: str = "ana") -> str:
    """A recorded answer and a reviewer's edit of it."""
    text = before if isinstance(before, str) else json.dumps(before)
    inter = Interaction(tenant="default", domain=domain, status="answered" if isinstance(before, str) else "validated",
                        request={}, question=question, template_version="t1", model="m", backend="fake",
                        created_at=T0 + timedelta(minutes=minute), output=before, output_text=text,
                        attempts=[Attempt(number=1, messages=[], raw_output=text)])
    mw.journal.write(inter)
    mw_feedback(mw, Feedback(interaction_id=inter.id, action="edit", edited_output=after, reviewer=reviewer))
    return inter.id


PETS = ["My dog broke a leg at the park, the vet bill is large", "Our cat swallowed a toy and needed surgery",
        "The vet treated my horse for colic"]


@pytest.fixture
def claims(project, mw) -> dict[str, str]:
    """claims_intake without its derive map (nor inference): reviewers route pet claims from legal to
    medical_claims (3 times), as the curated examples do, and raise two auto claims' severity."""
    spec_file = project / "knowledge_base" / "claims_intake" / "domain.yaml"
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    spec.pop("derive")
    spec["infer"] = False
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    ids = {}
    for i, q in enumerate(PETS):
        ids[f"pet{i}"] = planted(mw, "claims_intake", q, claim("pet", "legal"), claim("pet", "medical_claims"),
                                 minute=i)
    for i, q in enumerate(["Someone rear-ended my car on the motorway, it is a write-off",
                           "My car rolled over on ice and the roof is crushed"]):
        ids[f"auto{i}"] = planted(mw, "claims_intake", q, claim("auto", "motor_claims", "low"),
                                  claim("auto", "motor_claims", "high"), minute=10 + i)
    return ids


# -- the diff -------------------------------------------------------------------------------------------------

def test_changes_fold_indexes_and_name_absent_values():
    before = {"a": "x", "filters": [{"value": 2}, {"value": 5}], "gone": 1}
    after = {"a": "y", "filters": [{"value": 3}, {"value": 5}, {"value": 9}], "new": True}
    assert edits.changes(before, after) == {
        ("/a", "x", "y"), ("/filters/*/value", "2", "3"), ("/filters/*/value", "(absent)", "9"),
        ("/gone", "1", "(absent)"), ("/new", "(absent)", "true")}
    assert edits.changes({"a": 1}, {"a": 1}) == set()
    assert edits.changes({"n": None}, {"n": 0}) == {("/n", "null", "0")}


# -- schema'd domains ---------------------------------------------------------------------------------------

def test_fields_and_transitions_are_counted(mw, claims):
    report = edits.mine(mw.settings.db_path, domains=mw.domains)
    assert report["edits"] == 5
    (dom,) = report["domains"]
    assert dom["domain"] == "claims_intake" and dom["edits"] == 5 and not dom["free_text"]
    fields = {f["path"]: f for f in dom["fields"]}
    assert set(fields) == {"/department", "/severity"}
    assert fields["/department"]["edits"] == 3
    assert fields["/department"]["changes"] == [{"from": "legal", "to": "medical_claims", "count": 3}]
    assert fields["/severity"]["changes"] == [{"from": "low", "to": "high", "count": 2}]


def test_suggestions_derive_negative_rule(mw, claims):
    s = edits.mine(mw.settings.db_path, domains=mw.domains)["suggestions"]
    kinds = [(x["kind"], x["support"]) for x in s]
    assert kinds == [("derive", 3), ("negative", 2), ("rule", 2)]  # the derived field gets no negative or rule
    derive = s[0]
    spec = derive["patch"]["derive"]["/department"]
    assert spec["from"] == "/claim_type"  # not /severity or /channel: the curated examples contradict those
    # the edits' entry, completed from the curated examples
    assert spec["map"] == {"pet": "medical_claims", "auto": "motor_claims", "home": "property_claims",
                           "travel": "travel_desk", "health": "medical_claims", "liability": "legal"}
    negative = s[1]["patch"]["negatives"][0]
    assert negative["why"] == "reviewers changed /severity from low to high"
    assert negative["id"] == f"edit-{claims['auto0'][:12]}"  # the oldest such edit
    assert negative["wrong"]["severity"] == "low" and negative["right"]["severity"] == "high"
    assert "prefer high over low" in s[2]["patch"]["rules"][0]
    assert [x["n"] for x in s] == [1, 2, 3] and not any(x["applied"] for x in s)
    assert edits.mine(mw.settings.db_path, domains=mw.domains, min_count=4)["suggestions"] == []


def test_no_derive_when_the_edits_disagree(mw, claims):
    planted(mw, "claims_intake", "The vet saw my rabbit", claim("pet", "legal"),
            claim("pet", "property_claims"), minute=20)  # pet -> two departments: not a function of claim_type
    s = edits.mine(mw.settings.db_path, domains=mw.domains)["suggestions"]
    assert "derive" not in {x["kind"] for x in s}
    why = {x["patch"]["negatives"][0]["why"] for x in s if x["kind"] == "negative"}
    assert why == {"reviewers changed /department from legal to medical_claims",
                   "reviewers changed /severity from low to high"}


def test_a_suggestion_that_would_break_the_domain_is_refused(mw):
    """With domain.yaml's derive map (pet -> medical_claims, as the curated examples say), edits to
    property_claims give no derive map, and their negative (whose right answer contradicts the map, which the
    loader refuses) is not applied."""
    for i, q in enumerate(PETS[:2]):
        planted(mw, "claims_intake", q, claim("pet", "medical_claims"), claim("pet", "property_claims"), minute=i)
    s = edits.mine(mw.settings.db_path, domains=mw.domains)["suggestions"]
    assert [x["kind"] for x in s] == ["negative", "rule"]
    with pytest.raises(RequestError, match="would not load with it.*disagrees with domain.yaml"):
        edits.apply(mw.settings.db_path, domains=mw.domains, overrides=mw.domains.overrides, selector="1")
    assert mw.domains.overrides.versions("claims_intake") == []
    edits.apply(mw.settings.db_path, domains=mw.domains, overrides=mw.domains.overrides, selector="2")  # the rule
    assert len(mw.domains.overrides.versions("claims_intake")) == 1


def test_applying_a_derive_map_goes_live(mw, fake_llm, claims):
    overrides = mw.domains.overrides
    assert ("department",) not in mw.domains.get("claims_intake").declarative.spec.derive
    done = edits.apply(mw.settings.db_path, domains=mw.domains, overrides=overrides, selector="1")
    assert done["suggestion"]["kind"] == "derive" and done["version"].startswith("1-")
    assert [v["version"] for v in overrides.versions("claims_intake")] == [done["version"]]
    assert overrides.live_name("claims_intake") == done["version"]
    dom = mw.domains.get("claims_intake")
    derive = dom.declarative.spec.derive[("department",)]
    assert derive.source == "/claim_type" and derive.map["pet"] == "medical_claims"
    assert derive.map["auto"] == "motor_claims"
    # the next answer gets the learned department, whatever the model says
    fake_llm.enqueue(json.dumps(claim("pet", "legal")))
    result = mw.ask("My parrot hurt its wing and saw the vet", domain="claims_intake")
    assert result.output["department"] == "medical_claims"
    again = edits.mine(mw.settings.db_path, domains=mw.domains)["suggestions"]
    assert [x["applied"] for x in again if x["kind"] == "derive"] == [True]
    assert again[-1]["kind"] == "derive"  # applied ones go last


def test_applying_a_negative_through_the_cli(cli_project, mw, claims, capsys):
    s = edits.mine(mw.settings.db_path, domains=mw.domains)["suggestions"]
    negative = next(x for x in s if x["kind"] == "negative")
    data = ["--data-dir", str(mw.settings.data_dir)]
    code, out, err = run_cli(capsys, *data, "stats", "--edits", "--apply", negative["id"])
    assert code == 0, err
    version = mw.domains.overrides.live_name("claims_intake")
    assert version and f"override version {version} of claims_intake is live" in " ".join(out.split())
    dom = mw.domains.get("claims_intake")
    learned = [n for n in dom.negatives if n.id == f"edit-{claims['auto0'][:12]}"]
    assert learned and learned[0].why == "reviewers changed /severity from low to high"
    assert learned[0].wrong["severity"] == "low" and learned[0].right["severity"] == "high"
    # a second suggestion builds on the first version; both stay in the history
    rule = next(x for x in s if x["kind"] == "rule")
    code, out, err = run_cli(capsys, *data, "stats", "--edits", "--apply", rule["id"], "--json")
    assert code == 0, err
    assert json.loads(out)["version"].startswith("2-")
    dom = mw.domains.get("claims_intake")
    assert rule["patch"]["rules"][0] in dom.spec.rules and any(n.id == learned[0].id for n in dom.negatives)
    assert len(mw.domains.overrides.versions("claims_intake")) == 2
    assert not (cli_project / "knowledge_base" / "claims_intake" / "overrides").exists()  # never in the repo


def test_cli_report_and_errors(cli_project, mw, claims, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    data = ["--data-dir", str(mw.settings.data_dir)]
    code, out, err = run_cli(capsys, *data, "stats", "--edits", "--domain", "claims_intake")
    assert code == 0, err
    assert "claims_intake: fields changed by 5 edits" in out
    assert "legal -> medical_claims (3)" in out and "low -> high (2)" in out
    assert "derive /department from /claim_type: pet -> medical_claims" in out
    assert "stats --edits --apply" in out
    code, out, err = run_cli(capsys, *data, "stats", "--edits", "--json", "--min-count", "3")
    assert [x["kind"] for x in json.loads(out)["suggestions"]] == ["derive"]
    code, _out, err = run_cli(capsys, *data, "stats", "--edits", "--apply", "99")
    assert code == 2 and "no suggestion '99'" in err
    code, out, err = run_cli(capsys, *data, "stats", "--edits", "--domain", "shop_query")
    assert code == 0 and "no edits to learn from in shop_query" in out
    code, _out, err = run_cli(capsys, *data, "stats", "--edits", "--domain", "nope")
    assert code == 2


def test_wildcard_fields(mw):
    q = "Apartments to rent with at least 2 bedrooms under 1500"
    for i in range(2):
        planted(mw, "listing_search", q + " " * i, listing(("bedrooms", "gte", 3), ("price", "lte", 1500)),
                listing(("bedrooms", "gte", 2), ("price", "lte", 1500)), minute=i)
    (dom,) = edits.mine(mw.settings.db_path, domains=mw.domains)["domains"]
    assert dom["fields"] == [{"path": "/filters/*/value", "edits": 2,
                              "changes": [{"from": "3", "to": "2", "count": 2}]}]


# -- free text ------------------------------------------------------------------------------------------------

def test_free_text_additions_and_removals(mw):
    pairs = [("How do I sum a column?", "Use =SUM(A:A). I hope this helps!", "Use =SUM(A:A). Check the range first."),
             ("How do I count rows?", "Use =COUNTA(A:A). I hope this helps!",
              "Use =COUNTA(A:A). Check the range first."),
             ("How do I average?", "Try =AVERAGE(B:B) maybe. I hope this helps!", "Use =AVERAGE(B:B).")]
    for i, (q, before, after) in enumerate(pairs):
        planted(mw, "assistant", q, before, after, minute=i)
    report = edits.mine(mw.settings.db_path, domains=mw.domains, domain="assistant")
    (dom,) = report["domains"]
    assert dom["free_text"] and dom["edits"] == 3
    assert dom["removed_sentences"][0] == ["I hope this helps!", 3]
    assert dom["added_sentences"][0] == ["Check the range first.", 2]
    assert ["hope", 3] in dom["removed_words"] and ["helps", 3] in dom["removed_words"]
    assert ["check", 2] in dom["added_words"] and ["range", 2] in dom["added_words"]
    rules = [x for x in report["suggestions"] if x["kind"] == "rule"]
    remove = next(x for x in rules if x["patch"]["rules"] == ['Do not write "I hope this helps!"'])
    assert remove["support"] == 3
    done = edits.apply(mw.settings.db_path, domains=mw.domains, overrides=mw.domains.overrides, selector=remove["id"])
    assert 'Do not write "I hope this helps!"' in mw.domains.get("assistant").spec.rules
    assert done["version"].startswith("1-")
    negative = next(x for x in report["suggestions"] if x["kind"] == "negative")
    assert negative["patch"]["negatives"][0]["wrong"].endswith("I hope this helps!")


def test_only_edits_count_and_unknown_domains(mw, claims):
    mw_feedback(mw, Feedback(interaction_id=claims["pet0"], action="approve", reviewer="zoe"))  # newest: approve
    report = edits.mine(mw.settings.db_path, domains=mw.domains)
    assert report["edits"] == 4
    with pytest.raises(UnknownDomainError):
        edits.mine(mw.settings.db_path, domains=mw.domains, domain="nope")
    with pytest.raises(RequestError):
        edits.mine(mw.settings.db_path, domains=mw.domains, min_count=0)
