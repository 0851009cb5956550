"""The `query` benchmark's questions on a small synthetic organisation: every name it asks
about exists, and the answers agree with the violations the generator planted."""

from __future__ import annotations

from bench.query import measure
from bench.synthetic import SEED, generate

SIZE = 200


def planted_subjects(control: str) -> set[str]:
    return {subject for c, subject in generate(SIZE, SEED).planted if c == control}


def test_the_benchmark_questions_agree_with_the_planted_violations() -> None:
    result = measure(SIZE, SEED)
    timed = result["timed"]
    assert result["questions"] == len(timed) > 0
    assert result["seconds"]["max"] == max(t["seconds"] for t in timed)

    dual_homed = planted_subjects("proc-egress-only-via-gateways")
    to_internet = [t for t in timed if t["kind"] == "host-to-internet"]
    # Only a processing server planted on the office LAN gets out (through the office
    # gateway); every other host, the planted receiving server included, has no way there.
    assert {t["from"] for t in to_internet if t["reachable"] == "yes"} == dual_homed
    assert all(t["reachable"] == "no" for t in to_internet if t["from"] not in dual_homed)

    open_senders = planted_subjects("send-no-inbound")
    on_8443 = [t for t in timed if t["port"] == 8443]
    assert any(t["to"] in open_senders for t in on_8443)
    for t in on_8443:
        assert (t["reachable"] == "yes") is (t["to"] in open_senders), t

    egress = planted_subjects("recv-no-outbound")
    to_network = [t for t in timed if t["kind"] == "host-to-network"]
    assert to_network and all(t["from"] in egress and t["reachable"] == "yes" for t in to_network)

    assert result["inbound"]["sources_asked"] > result["inbound"]["sources_that_can"] > 0
