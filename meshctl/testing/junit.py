"""A Report as JUnit XML (what GitHub Actions reporters, GitLab and Jenkins ingest): one testsuite
per service, one testcase per check. Pure: a string out."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ..events import ERROR, FAILED, SKIPPED
from .report import Report, ServiceReport

_NOT_XML = re.compile("\x1b\\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """XML 1.0 cannot carry most control characters (a log's colour codes): drop them."""
    return _NOT_XML.sub("", text)


def render_junit(report: Report) -> str:
    """One testsuite per service, one testcase per check; a failure carries its message and the
    response excerpt; a failing service's container logs go in its system-out."""
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    root = ET.Element("testsuites", name=f"meshctl test {report.project}")
    timestamp = report.started.replace(microsecond=0).isoformat()
    for service in report.services:
        counts = {"tests": len(service.results), "failures": service.count(FAILED),
                  "errors": service.count(ERROR), "skipped": service.count(SKIPPED)}
        suite = ET.SubElement(root, "testsuite", {"name": service.service, "timestamp": timestamp,
                                                  "hostname": "localhost", "time": f"{service.seconds:.3f}",
                                                  **{k: str(v) for k, v in counts.items()}})
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="project", value=report.project)
        logs = _logs_text(service)
        for result in service.results:
            case = ET.SubElement(suite, "testcase", name=result.name, classname=f"{report.project}.{service.service}",
                                 time=f"{result.seconds:.3f}")
            if result.outcome in (FAILED, ERROR):
                body = result.message + (f"\n\nresponse:\n{result.excerpt}" if result.excerpt else "")
                ET.SubElement(case, "failure" if result.outcome == FAILED else "error",
                              message=_xml_text(result.message),
                              type="CheckFailed" if result.outcome == FAILED else "CheckError").text = _xml_text(body)
                if logs:
                    ET.SubElement(case, "system-out").text = _xml_text(logs)
            elif result.outcome == SKIPPED:
                ET.SubElement(case, "skipped", message=_xml_text(result.message))
            if result.faults:
                out = case.find("system-out")
                held = f"faults held while it ran: {result.faults}"
                if out is None:
                    ET.SubElement(case, "system-out").text = _xml_text(held)
                else:
                    out.text = _xml_text(f"{held}\n\n{out.text or ''}")
        if logs:
            ET.SubElement(suite, "system-out").text = _xml_text(logs)
        for key in totals:
            totals[key] += counts[key]
    root.set("time", f"{report.seconds:.3f}")
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _logs_text(service: ServiceReport) -> str:
    return "\n".join(f"{role} | {line}" for role, lines in service.logs for line in lines)

