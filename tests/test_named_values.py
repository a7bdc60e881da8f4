"""Named values (domains/named_values.py): a word value written beside a word that names its label ("host
pay-01", "the checkout service") is admitted only as an item of that label."""

from __future__ import annotations

from jsonschema import Draft202012Validator

from rag_middleware.domains.named_values import NamedBank, _names, evidenced
from rag_middleware.request.ask import Switches
from tests.test_annotations import answer, domain


def branches(d, request):
    """The grammar, its notes and every item shape of its filters: the sure positions' and the other items'."""
    schema, notes = d.declarative.grammar(d.validator.json_schema(), request, flags=Switches())
    return schema, notes, item_shapes(schema["properties"]["filters"])


def item_shapes(array):
    found = [*array.get("prefixItems", []), *([array["items"]] if isinstance(array.get("items"), dict) else [])]
    return [b for node in found for b in node.get("anyOf", [node])]


def words_branches(shapes):
    """Per field label(s), the values of the word shapes that admit them (a sure position's and the rest's)."""
    out = {}
    for b in shapes:
        if "service" in b["properties"]["field"]["enum"] or "host" in b["properties"]["field"]["enum"]:
            out.setdefault(tuple(b["properties"]["field"]["enum"]), []).extend(b["properties"]["value"]["enum"])
    return out


def test_the_examples_teach_which_words_name_a_label(tmp_path):
    bank = domain(tmp_path).declarative.spec.named[("filters", "*", "value")]
    assert bank.label == "field" and bank.value == "value"
    assert bank.names["L:host"] == "host"  # "host web-03", "host pay-01", "host db-7"
    assert bank.names["R:service"] == "service"  # "the billing service", and its own name
    assert "L:the" not in bank.names and "L:from" not in bank.names  # beside anything, not only values


def test_a_value_beside_a_naming_word_is_admitted_only_with_its_label(tmp_path):
    d = domain(tmp_path)
    schema, notes, shapes = branches(d, "show the logs of kafka-ui excluding host pay-07 in the last hour")
    found = words_branches(shapes)
    assert "pay-07" in found[("host",)]
    # the word before "host" is beside it too; it is no value the model writes
    assert all("pay-07" in v or v.endswith("excluding") for v in found[("host",)])
    rest = found[("service", "host")]
    assert "pay-07" not in rest and "kafka-ui" in rest  # no word names it, nor is it like a label's values
    assert any("named beside the request's words, only as field host" in n for n in notes)
    truth = answer([("host", "neq", "pay-07"), ("service", "eq", "kafka-ui")], 60)  # the sure item first
    assert not [e for e in Draft202012Validator(schema).iter_errors(truth) if e.validator != "additionalProperties"]


def test_a_label_the_examples_never_wrote_beside_a_value_is_read_from_its_own_name(tmp_path):
    d = domain(tmp_path)
    _, _, shapes = branches(d, "show the logs for service ledger-sync in the last hour")
    assert words_branches(shapes)[("service",)] == ["ledger-sync"]


def test_a_value_between_words_naming_two_labels_is_left_to_the_model(tmp_path):
    d = domain(tmp_path)
    _, notes, shapes = branches(d, "show the logs for host web-9 service in the last hour")
    found = words_branches(shapes)
    assert "web-9" in found[("service", "host")]
    assert not any(b for k, b in found.items() if len(k) == 1 and "web-9" in b)


def test_a_taught_word_must_stand_beside_values_more_than_beside_other_words():
    counts = {"L:the": {"service": 4, "none": 4}, "L:customer": {"user": 3, "none": 1},
              "R:service": {"service": 1, "none": 9}, "L:on": {"host": 2, "service": 2}}
    names = _names(counts, {"R:service": "service", "L:service": "service"})
    assert names == {"L:customer": "user", "R:service": "service", "L:service": "service"}
    # a label's own name words need no example, but examples against them count: split, it names none
    assert _names({"L:service": {"host": 3}}, {"L:service": "service"}) == {}
    assert _names({"L:service": {"host": 9}}, {"L:service": "service"}) == {"L:service": "host"}


def test_a_shape_without_an_enum_to_narrow_is_left_as_it_is():
    bank = NamedBank("field", "value", {"L:host": "host"})
    holder = {"type": "object", "properties": {"field": {"type": "string"}, "value": {"enum": ["web-1"]}}}
    union = [holder]
    assert bank.split(union, holder, "host web-1") == ([], 0, False)
    assert union == [holder]


def test_a_mark_of_a_value_is_a_naming_word_an_identifier_or_quotes():
    assert evidenced("web-03", "") and evidenced("u_48213", "") and evidenced("NullPointerException", "")
    assert evidenced("card declined", 'any "card declined" messages') and not evidenced("timeout", "a timeout")


def word_shape(values):
    return {"type": "object", "properties": {"field": {"enum": ["service", "host"]}, "value": {"enum": values}}}


def test_where_the_examples_values_all_carry_a_mark_the_others_are_left_out():
    bank = NamedBank("field", "value", {"L:host": "host"}, evidenced=True)
    number = {"type": "object", "properties": {"value": {"enum": [5]}}}
    holder = word_shape(["how", "many", "web-1", "checkout", "pay-2"])
    union = [number, holder]
    assert bank.split(union, holder, "how many checkout errors on host pay-2 or web-1") == (["host"], 3, False)
    assert [b["properties"]["value"]["enum"] for b in union] == [[5], ["web-1", "pay-2"]]  # "pay-2 or web-1"
    holder = word_shape(["how", "many"])
    union = [number, holder]
    assert bank.split(union, holder, "how many errors") == ([], 2, False)
    assert union == [number]  # the word shape is gone, the number's stays
    holder = word_shape(["how", "many"])
    assert bank.split([holder], holder, "how many errors") == ([], 2, True)  # the caller empties the list
    bank.evidenced = False
    holder = word_shape(["how", "many"])
    assert bank.split([number, holder], holder, "how many errors") == ([], 0, False)


def test_a_value_joined_to_a_named_one_takes_its_label():
    bank = NamedBank("field", "value", {"L:host": "host", "L:hosts": "host", "L:user": "user"})
    assert bank.labelled("excluding host pay-01 and pay-04", ["pay-01", "pay-04"]) == {"pay-01": "host",
                                                                                        "pay-04": "host"}
    assert bank.labelled("hosts web-1, web-2 & web-3", ["web-1", "web-2", "web-3"]) == dict.fromkeys(
        ["web-1", "web-2", "web-3"], "host")
    # a space alone joins nothing, nor does a word other than "and" or "or"
    assert bank.labelled("host web-1 web-2 then checkout", ["web-1", "web-2", "checkout"]) == {"web-1": "host"}
    # joined to two labels: none
    assert bank.labelled("host web-1 and user u-1, x-9", ["web-1", "u-1", "x-9"])["x-9"] == "user"


def test_a_phrase_around_a_named_value_or_another_shapes_value_is_no_value():
    bank = NamedBank("field", "value", {"L:host": "host"})
    path = {"type": "object", "properties": {"field": {"enum": ["endpoint"]}, "value": {"enum": ["/api/v1/charge"]}}}
    holder = word_shape(["POST api/v1/charge", "api/v1/charge", "excluding host pay-01", "pay-01", "checkout"])
    union = [path, holder]
    labels, dropped, _ = bank.split(union, holder, "POST /api/v1/charge from checkout excluding host pay-01")
    assert labels == ["host"] and dropped == 3
    assert [b["properties"]["value"]["enum"] for b in union] == [["/api/v1/charge"], ["pay-01"], ["checkout"]]


def test_a_form_nearly_only_one_labels_values_take_names_that_label():
    from rag_middleware.domains.named_values import _forms, form_of

    assert form_of("pdf-renderer") == "a-a" and form_of("web-03") == "a-9" and form_of("u_48213") == "a_9"
    forms = _forms([(v, label, "") for v, label in [
        ("stripe-gateway", "service"), ("search-api", "service"), ("email-sender", "service"),
        ("web-03", "host"), ("db-7", "host"), ("c-77", "user"),  # a-9 is two labels': none
        ("timeout", "message"), ("retry", "message"), ("deadlock", "message")]])  # a plain word: none
    assert forms == {"a-a": "service"}
    bank = NamedBank("field", "value", {"L:host": "host"}, forms=forms)
    assert bank.labelled("debug output of pdf-renderer on host pdf-1", ["pdf-renderer", "pdf-1"]) == {
        "pdf-renderer": "service", "pdf-1": "host"}
    # a naming word comes first
    assert bank.labelled("host api-gateway", ["api-gateway"]) == {"api-gateway": "host"}
    # one odd value among a label's many (a host named like a service) does not unlearn the form
    services = [(v, "service", "") for v in ("stripe-gateway", "search-api", "email-sender", "report-export",
                                             "refunds-api")]
    assert _forms([*services, ("db-analytics", "host", "")]) == {"a-a": "service"}
    assert _forms([*services[:3], ("db-analytics", "host", "")]) == {}  # 3 of 4 is too few
    # quotes are a form: three quoted messages teach that an unnamed quoted phrase is a message
    said = [(v, "message", f'logs with "{v}" in them') for v in ("card declined", "timeout", "deadlock found")]
    forms = _forms([*said, ("checkout", "service", "the checkout service")])
    assert forms == {"<quoted>": "message"}
    bank = NamedBank("field", "value", {"R:service": "service"}, forms=forms)
    assert bank.labelled("errors saying 'pool exhausted' from the mailer service", ["pool exhausted", "mailer"]) == {
        "pool exhausted": "message", "mailer": "service"}


def test_a_word_that_stands_before_anything_names_nothing_however_many_values_follow_it(tmp_path):
    from collections import Counter

    from rag_middleware.domains.named_values import _count

    counts: dict[str, Counter[str]] = {}
    # "the" stands before 3 service values, and as often before words that are no value of the field at all
    for body, value in [("errors on the billing service in the last hour", "billing"),
                        ("the mailer service logs for the past day", "mailer"),
                        ("the ledger service timed out during the night", "ledger")]:
        _count(body, [(value, "service")], counts)
    assert counts["L:the"]["service"] == 3 and counts["L:the"]["none"] == 3
    assert "L:the" not in _names(counts, {})
    bank = domain(tmp_path).declarative.spec.named[("filters", "*", "value")]
    assert bank.counts["L:host"]["host"] >= 2  # what was counted is kept, for --explain


def test_an_identifier_right_after_its_naming_word_is_surely_an_item(tmp_path):
    bank = NamedBank("field", "value", {"L:host": "host", "L:user": "user", "R:service": "service"})
    body = "errors for user 55102 on the checkout service, excluding host pay-01 and pay-04"
    assert bank.sure(body, ["55102", "checkout", "pay-01", "pay-04", "excluding"]) == ["55102", "pay-01"]
    d = domain(tmp_path)
    schema, notes, _ = branches(d, "show the logs for host web-42 in the last hour")
    filters = schema["properties"]["filters"]
    assert filters["minItems"] == 1
    [first] = filters["prefixItems"]  # its own position, holding only it, with the label its word names
    assert first["properties"]["value"]["enum"] == ["web-42"] and first["properties"]["field"]["enum"] == ["host"]
    assert any("one per value surely an item: ['web-42']" in n for n in notes)


def test_a_number_another_shape_takes_is_no_word_value():
    bank = NamedBank("field", "value", {"L:host": "host"})
    number = {"type": "object", "properties": {"field": {"enum": ["status"]}, "value": {"enum": [429, 15]}}}
    holder = word_shape(["429", "429s", "number of 429", "15", "gateway-2", "web-7"])
    union = [number, holder]
    labels, dropped, _ = bank.split(union, holder, "number of 429s on host web-7 from gateway-2, top 15")
    assert labels == ["host"] and dropped == 4  # "429", "429s", "number of 429", "15": the status shape's
    assert [b["properties"]["value"]["enum"] for b in union] == [[429, 15], ["web-7"], ["gateway-2"]]


def test_a_label_whose_values_all_carry_a_mark_names_no_plain_word():
    from rag_middleware.domains.named_values import _marked

    marked = _marked([("eu-west-1", "region", ""), ("us-east-1", "region", ""), ("checkout", "service", ""),
                      ("pdf-renderer", "service", ""), ("web-03", "host", "")])
    assert marked == {"region"}  # a service may be a plain word; one host is too few to tell
    bank = NamedBank("field", "value", {"L:region": "region", "R:service": "service"}, marked=marked)
    body = "how many errors per region yesterday from the checkout service in region eu-north-1"
    assert bank.labelled(body, ["yesterday", "checkout", "eu-north-1"]) == {"checkout": "service",
                                                                            "eu-north-1": "region"}


def test_a_number_a_word_names_is_no_other_shapes_number():
    bank = NamedBank("field", "value", {"L:user": "user"})
    number = {"type": "object", "properties": {"field": {"enum": ["status"]}, "value": {"enum": [5519023, 50]}}}
    holder = word_shape(["5519023", "web-7"])
    holder["properties"]["field"]["enum"] = ["service", "user"]
    union = [number, holder]
    bank.split(union, holder, "requests under 50 ms from user 5519023 on web-7")
    assert union[0]["properties"]["value"]["enum"] == [50]  # the status shape keeps only its own number
    assert ["5519023"] in [b["properties"]["value"]["enum"] for b in union[1:]]
    # a number shape left with nothing is taken out
    number = {"type": "object", "properties": {"field": {"enum": ["status"]}, "value": {"enum": [5519023]}}}
    holder = word_shape(["5519023"])
    holder["properties"]["field"]["enum"] = ["service", "user"]
    union = [number, holder]
    bank.split(union, holder, "errors from user 5519023")
    assert [b["properties"]["field"]["enum"] for b in union] == [["user"]]


def test_a_word_naming_an_identifiers_kind_names_no_label_for_another_field():
    from rag_middleware.domains.named_values import unnamed
    from rag_middleware.domains.votes import mentioned
    bank = NamedBank("field", "value", {"L:host": "host", "R:service": "service", "L:user": "user_id"})
    body = "max duration on db host pg-primary-1 for the fraud-scorer service, per region, top 3 hosts, user 5519"
    text = unnamed(body, [bank])
    assert "pg-primary-1" in text and "fraud-scorer" in text and "host pg" not in text and "scorer service" not in text
    assert "user 5519" not in text  # a number after its naming word is its value
    assert mentioned(["host", "service", "region"], text) == ["host", "region"]  # "3 hosts" counts hosts: it asks
    assert unnamed("errors per host", [bank]) == "errors per host"  # no identifier: the word asks for its label


def test_a_value_before_a_naming_word_the_examples_taught_is_surely_an_item():
    counts = {"R:service": {"service": 2, "none": 3}, "R:messages": {"none": 1}}
    bank = NamedBank("field", "value", {"R:service": "service", "R:messages": "message", "L:host": "host"},
                     counts=counts)
    body = "info-level messages from the fraud-scorer service on host pay-01"
    assert bank.sure(body, ["info-level", "fraud-scorer", "pay-01"]) == ["fraud-scorer", "pay-01"]


def test_a_value_in_a_form_with_digits_only_one_label_takes_is_surely_an_item():
    bank = NamedBank("field", "value", {"L:host": "host"}, forms={"a-9": "host", "a-a": "service"})
    body = "deadlocks on db-02 from the sign-in flow of stripe-gateway"
    assert bank.labelled(body, ["db-02", "sign-in", "stripe-gateway"]) == {
        "db-02": "host", "sign-in": "service", "stripe-gateway": "service"}
    assert bank.sure(body, ["db-02", "sign-in", "stripe-gateway"]) == ["db-02"]  # a hyphenated word is no id


def test_a_phrase_around_an_identifier_is_no_value_and_an_identifier_keeps_its_case():
    from rag_middleware.domains.grounding import words_in
    words = words_in('pull logs for customer cus_7Q2kd9 mentioning "S3 PutObject" from Checkout')
    assert "cus_7Q2kd9" in words and "cus_7q2kd9" not in words and "s3 putobject" not in words
    assert "checkout" in words  # a capitalised plain word may be written in lower case
    bank = NamedBank("field", "value", {"L:host": "host"})
    holder = word_shape(["cus_7Q2kd9", "customer cus_7Q2kd9", "cus_7Q2kd9 mentioning", "S3 PutObject"])
    union = [holder]
    bank.split(union, holder, 'pull logs for customer cus_7Q2kd9 mentioning "S3 PutObject"')
    assert [v for b in union for v in b["properties"]["value"]["enum"]] == ["cus_7Q2kd9", "S3 PutObject"]


def test_a_form_lines_label_names_the_lines_whole_value():
    bank = NamedBank("field", "value", {"L:message": "message", "L:host": "host"})
    body = "Index: db\nHost: mysql-replica-03\nMessage contains: replication lag\nWindow: last 2 days"
    found = bank.labelled(body, ["mysql-replica-03", "replication lag", "replication", "lag", "db"])
    assert found == {"mysql-replica-03": "host", "replication lag": "message"}  # the whole value only
    assert bank.labelled("Level: fatal\nMessage contains: segfault.", ["segfault"]) == {"segfault": "message"}
    # not a form line's value: the label must open the line and the value close it
    assert bank.labelled("errors: the message said timeout on host web-03", ["timeout"]) == {}
    assert bank.labelled("Message contains: segfault on worker-2", ["segfault"]) == {}


def test_a_phrase_holding_a_value_of_its_own_label_is_no_value():
    bank = NamedBank("field", "value", {"R:service": "service"})
    body = "show the 25 most recent queue errors, excluding the mailer service"
    found = bank.labelled(body, ["mailer", "the mailer", "excluding the mailer", "queue errors"])
    assert found == {"mailer": "service"}  # all three end beside "service"; the word alone is the value
    assert bank.labelled('logs "the mailer" service', ["mailer", "the mailer"]) == {"mailer": "service",
                                                                                  "the mailer": "service"}


def test_where_the_examples_give_every_identifier_an_item_each_one_the_request_writes_is_sure():
    from rag_middleware.domains.named_values import _used

    bank = NamedBank("field", "value", {"L:host": "host"}, vocabulary=frozenset({"user_id", "info", "level"}))
    pairs = [("errors on web-03", {"web-03"}), ("logs of u_48213 for that user_id", {"u_48213"}),
             ("info-level logs from pay-01", {"pay-01"})]
    assert _used(pairs, bank) == (3, 3)  # "user_id" and "info-level" are the schema's own words
    assert _used([*pairs, ("is db-7 up?", set())], bank) is None  # one in four unused: not always
    assert _used(pairs[:2], bank) is None  # too few
    bank.used = (3, 3)
    body = "deadlocks on mysql-shard-04 for cus_Q8dLm2 after sign-in, info-level"
    found = bank.sure(body, ["mysql-shard-04", "cus_Q8dLm2", "sign-in", "info-level", "deadlocks"])
    assert set(found) == {"mysql-shard-04", "cus_Q8dLm2"}  # a hyphenated word is no identifier
    bank.used = None
    assert bank.sure(body, ["mysql-shard-04", "cus_Q8dLm2"]) == []
