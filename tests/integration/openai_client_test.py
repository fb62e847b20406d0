#!/usr/bin/env python3
"""The OpenAI HTTP API with the official `openai` client over loopback.

Starts the real otaro_server on the quick-start model (SmolLM2) three times:
open on loopback (no tokens, the quick start's setting), with a token file,
and with tokens + TLS + client certificates (the API then speaks HTTPS). Checks
completions and chat, streamed and not, against each other and against the
gRPC result of the same seeded request (the `otaro` CLI); `precision` through
extra_body; stop strings; the max_tokens cut; every error status; auth; a
client that disconnects mid-stream; 503 while draining; HTTPS with mutual
TLS; and runs every curl example in README.md's OpenAI section.

Run by tests/integration:openai_client_test with the Python that has the
official client ($OTARO_PYTHON, made by tools/install_test_python.sh).
"""
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

import openai

RUNFILES = os.environ.get("TEST_SRCDIR", "")
WORKSPACE = os.environ.get("TEST_WORKSPACE", "otaro")


def runfile(path):
    return os.path.join(RUNFILES, WORKSPACE, path) if RUNFILES else path


SERVER = runfile("server/otaro_server")
CLI = runfile("client/otaro")
README = runfile("README.md")
MODEL = os.environ.get("OTARO_DEFAULT_MODEL", "")
TOKEN = "0123456789abcdef0123456789abcdef"
GENERATE_ONLY = "fedcba9876543210fedcba9876543210"
# The model's id: the served file's name without its extension, as in the
# README's examples (the quick start serves the same file converted to .sefp).
MODEL_ID = os.path.splitext(os.path.basename(MODEL))[0]
KV_EMPTY = re.compile(r"\notaro_kv_cache_usage_ratio 0(\.0*)?(e\+?0+)?\n")


class Server:
    """One otaro_server process; its ports from --ready_file."""

    def __init__(self, name, *extra):
        self.dir = tempfile.mkdtemp(prefix="openai_%s_" % name, dir=os.environ.get("TEST_TMPDIR"))
        ready = os.path.join(self.dir, "ready.json")
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        args = [SERVER, "--model", MODEL, "--ready_file", ready,
                "--set", "server.grpc_address=127.0.0.1:0",
                "--set", "server.metrics_address=127.0.0.1:0",
                "--set", "server.http_address=127.0.0.1:0",
                "--set", "engine.threads=2"] + list(extra)
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while not os.path.exists(ready):
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError("otaro_server did not start: " + self.read_log())
            time.sleep(0.1)
        ports = json.load(open(ready))
        self.grpc_port, self.metrics_port, self.http_port = (
            ports["grpc_port"], ports["metrics_port"], ports["http_port"])
        self.base_url = "http://127.0.0.1:%d/v1" % self.http_port

    def read_log(self):
        self.log.flush()
        text = open(self.log.name).read()
        return text if len(text) < 6000 else text[:1000] + "\n...\n" + text[-4000:]

    def client(self, api_key="unused", **kw):
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, **kw)

    def metrics(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
        self.log.close()


def grpc_generate(server, prompt, *flags):
    """The same request over gRPC, by the otaro CLI: its stdout is the text + newline."""
    out = subprocess.run([CLI, "generate", "--server", "127.0.0.1:%d" % server.grpc_port,
                          "--timeout_seconds", "120"] + list(flags) + [prompt],
                         capture_output=True, text=True, check=True)
    return out.stdout[:-1]


def streamed_text(stream, chat):
    text, finish, usage, fingerprint = "", None, None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += (choice.delta.content or "") if chat else choice.text
            finish = choice.finish_reason or finish
        fingerprint = chunk.system_fingerprint or fingerprint
    return text, finish, usage, fingerprint


class OpenServerTest(unittest.TestCase):
    """The quick start's server: loopback, no tokens."""

    @classmethod
    def setUpClass(cls):
        # One request at a time and one waiting, so a third is refused (429);
        # bodies over 64 KiB are refused (413).
        cls.server = Server("open", "--set", "engine.max_batch_sequences=1",
                            "--set", "generation.max_waiting_requests=1",
                            "--set", "server.max_receive_message_bytes=65536",
                            "--set", "server.drain_delay_seconds=3")
        cls.client = cls.server.client()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_models(self):
        models = self.client.models.list().data
        self.assertEqual([m.id for m in models], [MODEL_ID])
        self.assertEqual(self.client.models.retrieve(MODEL_ID).id, MODEL_ID)
        with self.assertRaises(openai.NotFoundError):
            self.client.models.retrieve("gpt-4o")

    def test_chat_matches_stream_and_grpc(self):
        ask = dict(model=MODEL_ID, messages=[{"role": "user", "content": "Name a colour."}],
                   max_tokens=12, temperature=0.8, seed=5, extra_body={"precision": "E5M4"})
        reply = self.client.chat.completions.create(**ask)
        text = reply.choices[0].message.content
        self.assertTrue(text)
        self.assertEqual(reply.choices[0].message.role, "assistant")
        self.assertEqual(reply.system_fingerprint, "otaro-v1-E5M4")
        self.assertEqual(reply.model_extra["otaro"]["precision"], "E5M4")
        self.assertEqual(reply.model_extra["otaro"]["seed"], 5)
        self.assertEqual(reply.usage.completion_tokens, 12)
        self.assertEqual(reply.usage.total_tokens,
                         reply.usage.prompt_tokens + reply.usage.completion_tokens)
        streamed, finish, usage, fingerprint = streamed_text(
            self.client.chat.completions.create(stream=True,
                                                stream_options={"include_usage": True}, **ask),
            chat=True)
        self.assertEqual(streamed, text)
        self.assertEqual(finish, reply.choices[0].finish_reason)
        self.assertEqual(usage.completion_tokens, 12)
        self.assertEqual(fingerprint, "otaro-v1-E5M4")
        self.assertEqual(grpc_generate(self.server, "Name a colour.", "--chat", "--bits", "4",
                                       "--max_tokens", "12", "--temperature", "0.8",
                                       "--seed", "5"), text)

    def test_completion_matches_stream_and_grpc(self):
        ask = dict(model=MODEL_ID, prompt="Once upon a time", max_tokens=10, temperature=0.7,
                   seed=11, extra_body={"precision": 3, "prefill_precision": "e5m6"})
        reply = self.client.completions.create(**ask)
        text = reply.choices[0].text
        self.assertEqual(reply.model_extra["otaro"]["precision"], "E5M3")
        self.assertEqual(reply.model_extra["otaro"]["prefill_precision"], "E5M6")
        streamed, finish, _, _ = streamed_text(
            self.client.completions.create(stream=True, **ask), chat=False)
        self.assertEqual(streamed, text)
        self.assertEqual(finish, "length")
        self.assertEqual(grpc_generate(self.server, "Once upon a time", "--bits", "3",
                                       "--prefill_bits", "6", "--max_tokens", "10",
                                       "--temperature", "0.7", "--seed", "11"), text)

    def test_defaults_are_openais(self):
        reply = self.client.completions.create(model=MODEL_ID, prompt="The sky is", seed=1)
        # max_tokens defaults to 16 (unless the sampled text ends first)
        self.assertTrue(reply.usage.completion_tokens == 16 or
                        reply.choices[0].finish_reason == "stop", reply)
        self.assertEqual(reply.model_extra["otaro"]["precision"], "E5M8")

    def test_stop_string_and_max_tokens_cut(self):
        reply = self.client.completions.create(
            model=MODEL_ID, prompt="1, 2, 3, 4, 5,", max_tokens=40, temperature=0,
            stop=[" 8"])
        self.assertEqual(reply.choices[0].finish_reason, "stop")
        self.assertNotIn(" 8", reply.choices[0].text)
        self.assertIn("7", reply.choices[0].text)
        cut = self.client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "Tell me a long story."}],
            max_completion_tokens=3, temperature=0)
        self.assertEqual(cut.choices[0].finish_reason, "length")
        self.assertEqual(cut.usage.completion_tokens, 3)

    def test_logprobs(self):
        reply = self.client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
            temperature=0, logprobs=True)
        content = reply.choices[0].logprobs.content
        self.assertEqual(len(content), 4)
        self.assertEqual("".join(t.token for t in content), reply.choices[0].message.content)
        self.assertTrue(all(t.logprob <= 0 for t in content))
        with self.assertRaises(openai.BadRequestError) as refused:
            self.client.chat.completions.create(
                model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}], logprobs=True,
                top_logprobs=2)
        self.assertEqual(refused.exception.body["param"], "top_logprobs")

    def test_bad_requests_name_the_parameter(self):
        cases = [
            (dict(extra_body={"precision": "E5M9"}), "precision"),
            (dict(extra_body={"precision": "fp16"}), "precision"),
            (dict(temperature=5), "temperature"),
            (dict(n=2), "n"),
            (dict(max_tokens=100000), "max_tokens"),
            (dict(stop=["x"] * 9), "stop"),
            (dict(messages=[]), "messages"),
            (dict(messages=[{"role": "tool", "content": "x"}]), "messages[0].role"),
        ]
        for extra, param in cases:
            ask = dict(model=MODEL_ID, messages=[{"role": "user", "content": "x"}])
            ask.update(extra)
            with self.assertRaises(openai.BadRequestError, msg=str(extra)) as refused:
                self.client.chat.completions.create(**ask)
            self.assertEqual(refused.exception.status_code, 400)
            self.assertEqual(refused.exception.body["param"], param, extra)
            self.assertEqual(refused.exception.body["type"], "invalid_request_error")
            self.assertTrue(refused.exception.body["message"])

    def test_unknown_model_is_404(self):
        with self.assertRaises(openai.NotFoundError) as refused:
            self.client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        self.assertEqual(refused.exception.body["code"], "model_not_found")

    def raw(self, method, path, body=b"", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.http_port, timeout=60)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()

    def test_http_level_errors(self):
        status, _, body = self.raw("POST", "/v1/chat/completions", b"{not json")
        self.assertEqual(status, 400)
        self.assertIn("not valid JSON", json.loads(body)["error"]["message"])
        status, _, body = self.raw("POST", "/v1/completions", b"x" * 70000)
        self.assertEqual(status, 413)
        self.assertEqual(json.loads(body)["error"]["type"], "invalid_request_error")
        status, headers, _ = self.raw("GET", "/v1/chat/completions")
        self.assertEqual((status, headers.get("Allow")), (405, "POST"))
        status, _, body = self.raw("GET", "/v2/anything")
        self.assertEqual(status, 404)
        self.assertIn("error", json.loads(body))

    def test_full_queue_is_429_with_retry_after(self):
        # One running, one waiting (the server's limits above); the third is refused.
        client = self.server.client(max_retries=0)
        long_ask = dict(model=MODEL_ID, prompt="Count: 1, 2, 3,", max_tokens=200, temperature=0,
                        stream=True)
        first = client.completions.create(**long_ask)
        next(iter(first))  # running
        # The second waits in the queue; its answer would come only after the
        # first, so it is sent raw and never read.
        second = http.client.HTTPConnection("127.0.0.1", self.server.http_port, timeout=60)
        second.request("POST", "/v1/completions", body=json.dumps(
            {"prompt": "Count: 1, 2,", "max_tokens": 200, "stream": True}))
        deadline = time.time() + 30
        while 'otaro_scheduler_requests{state="waiting"} 1\n' not in self.server.metrics():
            self.assertLess(time.time(), deadline, "the second request never queued")
            time.sleep(0.05)
        try:
            with self.assertRaises(openai.RateLimitError) as refused:
                client.completions.create(model=MODEL_ID, prompt="x", max_tokens=1)
            self.assertEqual(refused.exception.status_code, 429)
            self.assertEqual(refused.exception.response.headers.get("retry-after"), "1")
        finally:
            first.close()
            second.close()

    def test_disconnect_mid_stream_frees_the_sequence(self):
        stream = self.client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "Write a long essay."}],
            max_tokens=400, temperature=0, stream=True, extra_body={"precision": "E5M6"})
        chunks = iter(stream)
        next(chunks)
        next(chunks)
        stream.close()  # the client goes away with ~398 tokens to go
        deadline = time.time() + 30
        cancelled = ('otaro_requests_total{method="GenerateStream",protocol="http",'
                     'precision="E5M6",code="CANCELLED"} 1')
        while time.time() < deadline:
            metrics = self.server.metrics()
            if cancelled in metrics and KV_EMPTY.search(metrics) \
                    and 'otaro_scheduler_requests{state="running"} 0\n' in metrics:
                break
            time.sleep(0.2)
        self.assertIn(cancelled, metrics)
        self.assertRegex(metrics, KV_EMPTY)
        self.assertIn('otaro_scheduler_requests{state="running"} 0\n', metrics)

    def test_requests_are_counted_by_protocol(self):
        self.client.completions.create(model=MODEL_ID, prompt="a", max_tokens=1,
                                       extra_body={"precision": 7})
        grpc_generate(self.server, "a", "--bits", "7", "--max_tokens", "1")
        metrics = self.server.metrics()
        self.assertRegex(metrics, r'otaro_requests_total\{method="Generate",protocol="http",'
                                  r'precision="E5M7",code="OK"\} \d')
        self.assertRegex(metrics, r'otaro_requests_total\{method="GenerateStream",protocol="grpc",'
                                  r'precision="E5M7",code="OK"\} \d')

    def test_readme_python_example(self):
        readme = open(README).read()
        section = readme[readme.index("## OpenAI-compatible HTTP API"):]
        example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
        example = example.replace("localhost:8000", "127.0.0.1:%d" % self.server.http_port)
        out = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True,
                             timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("otaro-v1-E5M3", out.stdout)

    def test_readme_curl_examples(self):
        readme = open(README).read()
        section = readme[readme.index("<!-- openai-curl-examples -->"):]
        section = section[:section.index("<!-- /openai-curl-examples -->")]
        commands = re.findall(r"```sh\n(.*?)```", section, re.S)
        self.assertGreaterEqual(len(commands), 3)
        for command in commands:
            command = command.replace("localhost:8000", "127.0.0.1:%d" % self.server.http_port)
            out = subprocess.run(["bash", "-c", "set -o pipefail; " + command],
                                 capture_output=True, text=True, timeout=120)
            self.assertEqual(out.returncode, 0, command + out.stderr)
            self.assertTrue(out.stdout.strip(), command)

    def test_zz_draining_answers_503(self):
        # Last (zz): SIGTERM starts the drain; during drain_delay_seconds new calls
        # get 503 with Retry-After, then the process exits 0.
        client = self.server.client(max_retries=0)
        self.server.process.send_signal(signal.SIGTERM)
        deadline = time.time() + 3
        refused = None
        while time.time() < deadline and refused is None:
            try:
                client.completions.create(model=MODEL_ID, prompt="x", max_tokens=1)
                time.sleep(0.05)
            except openai.APIStatusError as e:
                refused = e
        self.assertIsNotNone(refused)
        self.assertEqual(refused.status_code, 503)
        self.assertEqual(refused.response.headers.get("retry-after"), "1")
        self.assertEqual(self.server.process.wait(timeout=60), 0)


class AuthTest(unittest.TestCase):
    """The same tokens as gRPC: Authorization: Bearer."""

    @classmethod
    def setUpClass(cls):
        directory = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        tokens = os.path.join(directory, "tokens")
        with open(tokens, "w") as f:
            f.write("%s admin ops\n%s generate app\n" % (TOKEN, GENERATE_ONLY))
        os.chmod(tokens, 0o600)
        cls.server = Server("auth", "--set", "auth.token_file=" + tokens,
                            "--set", "server.http_model_name=smollm2")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_model_name_from_config(self):
        client = self.server.client(api_key=TOKEN)
        self.assertEqual([m.id for m in client.models.list().data], ["smollm2"])

    def test_tokens_accepted_and_refused(self):
        for token in (TOKEN, GENERATE_ONLY):
            reply = self.server.client(api_key=token).chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
            self.assertEqual(reply.usage.completion_tokens, 2)
        with self.assertRaises(openai.AuthenticationError) as refused:
            self.server.client(api_key="wrong-token-wrong-token").models.list()
        self.assertEqual(refused.exception.status_code, 401)
        self.assertEqual(refused.exception.body["type"], "authentication_error")
        conn = http.client.HTTPConnection("127.0.0.1", self.server.http_port, timeout=30)
        conn.request("POST", "/v1/completions", body=b'{"prompt": "x"}')
        self.assertEqual(conn.getresponse().status, 401)  # no Authorization header
        conn = http.client.HTTPConnection("127.0.0.1", self.server.http_port, timeout=30)
        conn.request("POST", "/v1/completions", body=b'{not json')
        self.assertEqual(conn.getresponse().status, 401)  # who asks before what
        self.assertIn('otaro_auth_denied_total{reason="unknown_token"}', self.server.metrics())


def causes(error):
    """The exception and every exception it was raised from."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def make_certs(directory):
    """A throw-away CA, a server certificate for localhost/127.0.0.1 and a
    client certificate, by the openssl CLI (EC keys: fast)."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=directory, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=otaro test CA")
    for name, san in (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                      ("client", "extendedKeyUsage=clientAuth")):
        run("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name)
        with open(os.path.join(directory, name + ".ext"), "w") as f:
            f.write(san + "\n")
        run("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext")
    return {n: os.path.join(directory, n) for n in
            ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


class TlsTest(unittest.TestCase):
    """tls.* set: the OpenAI API speaks HTTPS with the gRPC listener's files,
    client certificates included; tokens still apply on top."""

    @classmethod
    def setUpClass(cls):
        directory = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.certs = make_certs(directory)
        tokens = os.path.join(directory, "tokens")
        with open(tokens, "w") as f:
            f.write("%s generate app\n" % TOKEN)
        os.chmod(tokens, 0o600)
        cls.server = Server("tls", "--set", "auth.token_file=" + tokens,
                            "--set", "tls.cert_file=" + cls.certs["server.pem"],
                            "--set", "tls.key_file=" + cls.certs["server.key"],
                            "--set", "tls.client_ca_file=" + cls.certs["ca.pem"])
        cls.base_url = "https://localhost:%d/v1" % cls.server.http_port

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def client(self, client_certificate=True, api_key=TOKEN, trust_test_ca=True):
        context = ssl.create_default_context(cafile=self.certs["ca.pem"] if trust_test_ca else None)
        if client_certificate:
            context.load_cert_chain(self.certs["client.pem"], self.certs["client.key"])
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, max_retries=0,
                             http_client=openai.DefaultHttpxClient(verify=context))

    def test_chat_over_https_streamed_and_not(self):
        client = self.client()
        request = dict(model=MODEL_ID, messages=[{"role": "user", "content": "Name a colour."}],
                       max_tokens=12, seed=7, temperature=0.8,
                       extra_body={"precision": "E5M4"})
        reply = client.chat.completions.create(**request)
        self.assertGreater(reply.usage.completion_tokens, 0)
        self.assertIn("E5M4", reply.system_fingerprint)
        streamed, finish, _, _ = streamed_text(
            client.chat.completions.create(stream=True, **request), chat=True)
        self.assertEqual(streamed, reply.choices[0].message.content)
        self.assertEqual(finish, reply.choices[0].finish_reason)

    def test_a_client_without_a_certificate_is_refused(self):
        with self.assertRaises(openai.APIConnectionError) as refused:
            self.client(client_certificate=False).models.list()
        # The server's alert (TLS 1.3: "certificate required"), not a dead port.
        self.assertTrue(any(isinstance(e, ssl.SSLError) for e in causes(refused.exception)),
                        repr(refused.exception))

    def test_the_client_checks_the_servers_certificate(self):
        # Trusting only the system's CAs, the client refuses the test CA's server.
        with self.assertRaises(openai.APIConnectionError) as refused:
            self.client(trust_test_ca=False).models.list()
        self.assertTrue(any(isinstance(e, ssl.SSLCertVerificationError)
                            for e in causes(refused.exception)), repr(refused.exception))

    def test_tokens_still_apply(self):
        with self.assertRaises(openai.AuthenticationError) as refused:
            self.client(api_key="wrong-token-wrong-token").models.list()
        self.assertEqual(refused.exception.status_code, 401)

    def test_plain_http_on_the_port_gets_no_answer(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.http_port, timeout=30)
        conn.connect()  # the port is open and accepts
        with self.assertRaises((http.client.HTTPException, ConnectionError)):
            conn.request("GET", "/v1/models")
            conn.getresponse().read()


class JUnitResult(unittest.TextTestResult):
    """Also records each case for $XML_OUTPUT_FILE, so tools/test.sh counts cases."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.cases = []

    def _record(self, test, outcome, detail=""):
        # A failed setUpClass comes as an _ErrorHolder: one case of its own.
        name = getattr(test, "_testMethodName", None) or str(test)
        self.cases.append((test.__class__.__name__, name, outcome, detail))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "ok")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failure", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)


def main():
    if not MODEL or not os.path.exists(MODEL):
        print("OTARO_DEFAULT_MODEL is not set to the quick-start model (tools/test.sh sets it)")
        return 1
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, resultclass=JUnitResult).run(suite)
    path = os.environ.get("XML_OUTPUT_FILE")
    if path:
        suite_xml = ET.Element("testsuite", name="openai_client_test", tests=str(len(result.cases)))
        for cls, name, outcome, detail in result.cases:
            case = ET.SubElement(suite_xml, "testcase", classname=cls, name=name)
            if outcome != "ok":
                ET.SubElement(case, outcome, message=detail[:200]).text = detail
        root = ET.Element("testsuites")
        root.append(suite_xml)
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
