#!/usr/bin/env python3
"""Counts individual test cases in the gtest XML that `bazel test` leaves behind.

usage: count_test_cases.py TESTLOGS_DIR //pkg:target ...

Prints one line per failing case, then the closing line "N passed, M failed,
K skipped". A test target with no XML (it was skipped as incompatible, e.g. a
CUDA test under --config=cpu) is reported but not counted. Exits 1 if any case
failed.
"""
import os
import sys
import xml.etree.ElementTree as ET


def xml_path(testlogs, label):
    package, _, name = label.lstrip("/").partition(":")
    return os.path.join(testlogs, package, name, "test.xml")


def main(argv):
    testlogs, labels = argv[1], argv[2:]
    passed = failed = skipped = 0
    for label in labels:
        path = xml_path(testlogs, label)
        if not os.path.exists(path):
            print(f"count: {label}: no results (not run on this configuration)")
            continue
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as error:
            print(f"count: {label}: unreadable test.xml ({error}): counted as 1 failure")
            failed += 1
            continue
        cases = root.iter("testcase")
        found = False
        for case in cases:
            found = True
            name = f"{label} {case.get('classname', '')}.{case.get('name', '')}"
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
                print(f"FAILED: {name}")
            elif case.find("skipped") is not None or case.get("status") == "notrun" \
                    or case.get("result") == "skipped":
                skipped += 1
            else:
                passed += 1
        if not found:
            # Bazel writes a synthetic XML without cases for a test binary that
            # crashed or timed out before gtest wrote its own.
            suites = list(root.iter("testsuite"))
            bad = any(int(s.get("failures", "0")) + int(s.get("errors", "0")) > 0 for s in suites)
            if bad or not suites:
                failed += 1
                print(f"FAILED: {label} (crashed or timed out before reporting test cases)")
            else:
                passed += 1
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
