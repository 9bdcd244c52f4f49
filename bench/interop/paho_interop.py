#!/usr/bin/env python3
"""Run the Eclipse paho.mqtt.testing interoperability client tests against
one broker and print one result line per test.

The suites (third_party/paho.mqtt.testing/interoperability/client_test.py for
MQTT 3.1.1, client_test5.py for MQTT 5) read their settings from globals that
their __main__ block sets; this sets the same globals on the imported module
and runs its test case with a time limit per test, so that a test that waits
forever for an answer is reported as a timeout instead of stopping the run.

Output: lines "RESULT <suite> <test> <pass|fail|error|timeout> <seconds>" on
stdout, unittest's report (tracebacks) on stderr, and with --json a file of
{"suite/test": result}.
"""

import argparse
import importlib
import io
import json
import logging
import os
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE_DIR = os.path.join(HERE, "..", "..", "third_party", "paho.mqtt.testing", "interoperability")

SUITES = {"311": "client_test", "5": "client_test5"}


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout("test ran past its time limit")


class Result(unittest.TextTestResult):
    def __init__(self, *args, limit=30, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit = limit
        self.outcomes = {}
        self.seconds = {}

    def startTest(self, test):
        self.started = time.monotonic()
        signal.alarm(self.limit)
        super().startTest(test)

    def stopTest(self, test):
        signal.alarm(0)
        self.seconds[test._testMethodName] = time.monotonic() - self.started
        super().stopTest(test)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.outcomes[test._testMethodName] = "pass"

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.outcomes[test._testMethodName] = "fail"

    def addError(self, test, err):
        super().addError(test, err)
        name = getattr(test, "_testMethodName", str(test))
        self.outcomes[name] = "timeout" if err[0] is Timeout else "error"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", choices=sorted(SUITES), required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--timeout", type=int, default=30, help="seconds per test")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--shard", default="0/1", help="i/n: run every n-th test (by name) from the i-th")
    ap.add_argument("tests", nargs="*", help="only these test names")
    a = ap.parse_args()

    sys.path.insert(0, SUITE_DIR)
    mod = importlib.import_module(SUITES[a.suite])
    # What the suite's __main__ block sets.
    mod.host, mod.port = a.host, a.port
    mod.topics = ("TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA")
    mod.wildtopics = ("TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#")
    mod.nosubscribe_topics = ("test/nosubscribe",)
    mod.topic_prefix = "client_test5/"
    logging.getLogger().setLevel(logging.CRITICAL)
    signal.signal(signal.SIGALRM, on_alarm)

    loader = unittest.TestLoader()
    if a.tests:
        suite = unittest.TestSuite(mod.Test(t) for t in a.tests)
    else:
        suite = loader.loadTestsFromTestCase(mod.Test)
    i, n = (int(x) for x in a.shard.split("/"))
    suite = unittest.TestSuite(t for k, t in enumerate(sorted(suite, key=lambda t: t._testMethodName)) if k % n == i)
    names = [t._testMethodName for t in suite]
    log = io.StringIO()
    runner = unittest.TextTestRunner(stream=log, verbosity=2,
                                     resultclass=lambda *x, **k: Result(*x, limit=a.timeout, **k))
    result = runner.run(suite)
    sys.stderr.write(log.getvalue())
    outcomes = {}
    for n in names:
        # A setUpClass failure leaves tests without an outcome.
        outcomes[n] = result.outcomes.get(n, "error")
        print("RESULT", a.suite, n, outcomes[n], "%.1fs" % result.seconds.get(n, 0), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({a.suite + "/" + n: r for n, r in outcomes.items()}, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
