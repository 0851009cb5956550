"""The unexpected-operation-detection parsers: cron files and TMOUT on the collector's commands
as recorded from a lab organisation host's image (tests/data/recorded/lab-org.*), the audit
plugins and ossec.conf on files written in their documented formats (tests/data/audit/README.md,
tests/data/detection/README.md), and garbage."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.parsers import ParseError
from probes.parsers.detection import (
    parse_audit_plugins,
    parse_cron,
    parse_ossec_conf,
    parse_tmout,
)

DATA = Path(__file__).parents[2] / "data"
RECORDED = DATA / "recorded"


def test_cron_files_of_a_lab_organisation_host() -> None:
    cron = parse_cron((RECORDED / "lab-org.grep-cron.txt").read_text())
    aide = [j for j in cron.jobs if j.path == "/etc/cron.d/aide-check"]
    assert len(aide) == 1
    assert aide[0].schedule == "17 3 * * *"
    assert aide[0].user == "root"
    assert aide[0].command.startswith("/usr/bin/aide --config /etc/aide/aide.conf --check")
    assert cron.mailto["/etc/cron.d/aide-check"][1] == ""
    # /etc/crontab's run-parts lines and Debian's e2scrub entries are jobs too.
    assert any("run-parts --report /etc/cron.daily" in j.command for j in cron.jobs)
    assert any(j.path == "/etc/cron.d/e2scrub_all" for j in cron.jobs)
    # cron ignores names with a dot in /etc/cron.d (the package's .placeholder).
    assert not any(".placeholder" in j.path for j in cron.jobs)
    assert "/etc/cron.daily/dpkg" in cron.scripts


def test_cron_entry_forms() -> None:
    text = (
        "/etc/crontab:1:SHELL=/bin/sh\n"
        "/etc/crontab:2:MAILTO=ops@example.org\n"
        "/etc/crontab:3:@daily root /usr/bin/aide --check | mail -s aide ops\n"
        "/etc/cron.d/x:1:  # comment\n"
        "/etc/cron.d/x:2:*/15 1-5 * * mon-fri nobody /bin/true\n"
    )
    cron = parse_cron(text)
    # Files in path order (/etc/cron.d/ before /etc/crontab), lines in order within each.
    assert [(j.schedule, j.user) for j in cron.jobs] == [
        ("*/15 1-5 * * mon-fri", "nobody"),
        ("@daily", "root"),
    ]
    assert cron.mailto == {"/etc/crontab": (2, "ops@example.org")}


@pytest.mark.parametrize(
    "text",
    [
        "/etc/crontab:1:17 3 * * *\n",  # no user, no command
        "/etc/crontab:1:@sometimes root /bin/true\n",
        "/etc/crontab:1:17 3 * * * ro:ot /bin/true\n",
        "not grep output\n",
    ],
)
def test_cron_garbage_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        parse_cron(text)


def test_no_tmout_in_the_lab_image() -> None:
    # Recorded: the lab image sets no TMOUT (grep prints nothing, `|| true` makes it exit 0).
    assert parse_tmout((RECORDED / "lab-org.grep-tmout.txt").read_text()) == []


@pytest.mark.parametrize(
    ("line", "value", "readonly"),
    [
        ("readonly TMOUT=900", 900, True),
        ("TMOUT=600; export TMOUT", 600, False),
        ("declare -rx TMOUT=300", 300, True),
        ("typeset -r TMOUT", None, True),
        ("export TMOUT='450'", 450, False),
        ("readonly HISTFILE TMOUT", None, True),
        ("echo $TMOUT", None, False),
    ],
)
def test_tmout_lines(line: str, value: int | None, readonly: bool) -> None:
    [found] = parse_tmout(f"/etc/profile.d/tmout.sh:3:{line}\n")
    assert (found.value, found.readonly, found.number) == (value, readonly, 3)


def test_commented_tmout_is_left_out() -> None:
    assert parse_tmout("/etc/bash.bashrc:9:# readonly TMOUT=900\n") == []


def test_audit_plugins_written_in_auditd_format() -> None:
    plugins = parse_audit_plugins(
        (DATA / "audit" / "etc-audit.detection-remote.grep.txt").read_text()
    )
    remote = plugins["/etc/audit/plugins.d/au-remote.conf"]
    assert remote["active"].value == "yes"
    assert remote["active"].number == 2
    assert plugins["/etc/audit/audisp-remote.conf"]["remote_server"].value == "10.98.21.5"
    assert plugins["/etc/audit/plugins.d/syslog.conf"]["args"].value == "LOG_INFO"
    # auditd.conf and the rules files are not plugins.
    assert "/etc/audit/auditd.conf" not in plugins


def test_audit_plugin_garbage_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_audit_plugins("/etc/audit/plugins.d/x.conf:1:active yes\n")


def test_wazuh_agent_configuration() -> None:
    conf = parse_ossec_conf((DATA / "detection" / "ossec.conf.wazuh-agent.grep.txt").read_text())
    assert conf.servers == [(4, "10.98.21.5")]
    assert conf.active_response_disabled == [(19, "no")]


def test_ossec_agent_server_ip_and_disabled_response() -> None:
    text = (
        "/var/ossec/etc/ossec.conf:1:<ossec_config>\n"
        "/var/ossec/etc/ossec.conf:2:  <client><server-ip>192.0.2.7</server-ip></client>\n"
        "/var/ossec/etc/ossec.conf:3:  <active-response><disabled>yes</disabled></active-response>\n"
        "/var/ossec/etc/ossec.conf:4:  <!-- <client><server-ip>10.0.0.1</server-ip></client> -->\n"
        "/var/ossec/etc/ossec.conf:5:</ossec_config>\n"
    )
    conf = parse_ossec_conf(text)
    assert conf.servers == [(2, "192.0.2.7")]
    assert conf.active_response_disabled == [(3, "yes")]


def test_ossec_conf_of_another_file_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_ossec_conf("/etc/passwd:1:root:x:0:0::/root:/bin/bash\n")


@given(st.text(max_size=400))
def test_arbitrary_text_parses_or_is_a_parse_error(text: str) -> None:
    for parse in (parse_cron, parse_tmout, parse_audit_plugins, parse_ossec_conf):
        with contextlib.suppress(ParseError):
            parse(text)
