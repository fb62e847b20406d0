#!/usr/bin/env python3
"""Writes the committed seed corpus tools/fuzz/corpus/<target>/ (run once; the
files are committed, so CI needs neither this script nor the shared folder).
Seeds are small: hand-written minimal inputs plus excerpts (a few KB) of the
shared data and of the repository's own test inputs.
  python3 tools/fuzz/make_seeds.py [SHARED_DIR]
The sefp_checkpoint seeds come from sefp/fuzz/write_seeds.cc (see run_sefp_fuzz.sh)."""
import json, os, re, sys

repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
shared = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "OTARO_SHARED_DIR", os.path.join(repo, "..", "shared"))
out = os.path.join(repo, "tools", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def cxx_string(src, var):
    """The value of `const std::string var = "..." "...";` in a C++ file."""
    m = re.search(r"std::string %s =(.*?);\n" % var, src, re.S)
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))
    return "".join(parts).encode().decode("unicode_escape")


# GGUF: the first 4 KB of the small model and of a vocabulary-only file.
for f in ["data/models/stories260K-gguf/stories260K.gguf",
          "data/tokenizer-vectors/ggml-vocab-gpt-2.gguf"]:
    with open(os.path.join(shared, f), "rb") as fh:
        put("gguf", os.path.basename(f) + ".head4k", fh.read(4096))

# tokenizer.json: as run_tokenizer_json_fuzz.sh.
put("tokenizer_json", "seed-bytelevel.json", '{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"Ġ":3,"Ġab":4,"1":5},"merges":["a b","Ġ ab"]},"added_tokens":[{"id":6,"content":"<s>","special":true}],"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}]},"decoder":{"type":"ByteLevel"}}')
put("tokenizer_json", "seed-spm.json", '{"model":{"type":"BPE","vocab":{"<unk>":0,"<s>":1,"</s>":2,"<0x41>":3,"▁":4,"a":5,"b":6,"ab":7,"▁ab":8},"merges":[["a","b"],["▁","ab"]],"byte_fallback":true,"unk_token":"<unk>"},"pre_tokenizer":{"type":"Metaspace","prepend_scheme":"first"}}')

# vocab.json NUL merges.txt NUL tokenizer_config.json
q = os.path.join(shared, "data/tokenizers/qwen2")
with open(os.path.join(q, "tokenizer_config.json")) as fh:
    qcfg = json.load(fh)
small_cfg = {k: qcfg[k] for k in ["added_tokens_decoder", "bos_token", "eos_token", "chat_template"] if k in qcfg}
small_cfg["added_tokens_decoder"] = {"7": {"content": "<|endoftext|>", "special": True}}
vocab = {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4, "1": 5, "c": 6}
put("vocab_merges", "seed-small", json.dumps(vocab) + "\0#version: 0.2\na b\nĠ ab\n\0" + json.dumps(small_cfg))
put("vocab_merges", "seed-nocfg", json.dumps(vocab) + "\0a b\n")
with open(os.path.join(q, "merges.txt"), encoding="utf-8") as fh:
    merges = fh.read().split("\n")[:120]
put("vocab_merges", "seed-qwen2-merges-head", json.dumps(vocab) + "\0" + "\n".join(merges) + "\n")

# YAML config: the deployed one, and the README's keys in small variations.
with open(os.path.join(repo, "deploy/config/otaro.yaml")) as fh:
    put("config_yaml", "deploy-otaro.yaml", fh.read())
put("config_yaml", "empty.yaml", "")
put("config_yaml", "nested.yaml", "server:\n  grpc_address: \"127.0.0.1:50051\"\n  metrics_address: \"\"\nmodel:\n  path: /models/x.gguf\n  resident_max_bits: 8\ngeneration:\n  default_mantissa_bits: 4\n  max_new_tokens: [1, 2]\nauth:\n  token_file: {a: b}\n")
put("config_yaml", "anchors.yaml", "a: &x {b: 1}\nc: *x\nserver: !!str 5\n...\n---\n")

# Token file.
put("token_file", "tokens", "# comment\n\n0123456789abcdef0123 generate client-a\nfedcba9876543210fedcba98 admin\n")
put("token_file", "bad-role", "0123456789abcdef0123 root x\n")

# Chat templates (template NUL bos NUL eos NUL role NUL content ...).
with open(os.path.join(repo, "engine/tokenizer/tokenizer_test.cc")) as fh:
    tsrc = fh.read()
convo = "\0".join(["system", "Be brief.", "user", "Hi!", "assistant", "Hello.", "user", "2+2?"])
templates = {"qwen2": qcfg["chat_template"]}
for var in ["smol", "plain", "llama3"]:
    try:
        templates[var] = cxx_string(tsrc, var)
    except Exception as e:  # a test rewritten: fewer seeds, not an error
        print("skipping", var, e)
templates["llama2"] = "{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}{% endif %}{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
templates["phi3"] = "{% for message in messages %}{% if message['role'] == 'user' %}{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif message['role'] == 'assistant' %}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}"
for name, t in templates.items():
    put("chat_template", name, t + "\0<s>\0</s>\0" + convo)

# Datasets: first byte = format (0 text, 1 alpaca, 2 chat, 3 auto), then the file.
text = "Once upon a time there was a cat.<|endoftext|>The end. ab ab\n<|endoftext|>"
alpaca_l = "\n".join(json.dumps(r) for r in [
    {"instruction": "Say hi", "input": "", "output": "hi"},
    {"instruction": "Add", "input": "2+2", "output": "4"}]) + "\n{broken\n"
alpaca_j = json.dumps([{"instruction": "Say hi", "output": "hi"}, {"instruction": 5}])
chat_l = "\n".join(json.dumps(r) for r in [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello."}]},
    {"messages": [{"role": "user", "content": "ab"}, {"role": "assistant", "content": "ab ab"},
                  {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}]) + "\n"
chat_j = json.dumps([{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "é🦙"}]}])
put("dataset", "text", b"\x00" + text.encode())
put("dataset", "text-pad", b"\x80" + text.encode())
put("dataset", "alpaca-jsonl", b"\x01" + alpaca_l.encode())
put("dataset", "alpaca-json", b"\x05" + alpaca_j.encode())
put("dataset", "chat-jsonl", b"\x02" + chat_l.encode())
put("dataset", "chat-json", b"\x06" + chat_j.encode())
put("dataset", "auto-chat", b"\x03" + chat_l.encode())
put("dataset", "auto-alpaca", b"\x07" + alpaca_l.encode())

# Tokenizer files: first byte 0 = llama2.c tokenizer.bin, 1 = tiktoken, 2 =
# tokenizer.json NUL tokenizer_config.json.
import struct
pieces = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0)] + [("<0x%02X>" % b, 0.0) for b in range(256)] + \
    [("\u2581", -1.0), ("a", -2.0), ("b", -3.0), ("ab", -1.5), ("\u2581ab", -1.2)]
blob = struct.pack("<i", 8)
for p, sc in pieces:
    bp = p.encode()
    blob += struct.pack("<fi", sc, len(bp)) + bp
put("tokenizer_files", "llama2c-small.bin", b"\x00" + blob)
with open(os.path.join(shared, "data/tokenizers/llama3-tiktoken/tokenizer.model"), "rb") as fh:
    put("tokenizer_files", "tiktoken-llama3-head", b"\x01" + b"".join(fh.readlines()[:300]))
put("tokenizer_files", "tokenizer-json-with-config", b"\x02" + open(os.path.join(out, "tokenizer_json", "seed-spm.json"), "rb").read()
    + b"\0" + json.dumps({"bos_token": "<s>", "eos_token": {"content": "</s>"}, "add_bos_token": True,
                           "added_tokens_decoder": {"9": {"content": "<|im_end|>", "special": True}},
                           "chat_template": qcfg["chat_template"]}).encode())
with open(os.path.join(shared, "data/models/stories260K-llama2c/tok512.bin"), "rb") as fh:
    put("tokenizer_files", "llama2c-tok512.bin", b"\x00" + fh.read())

# http_request: raw HTTP/1.1 requests as a client sends them to the OpenAI API.
chat_body = json.dumps({"model": "otaro", "messages": [{"role": "user", "content": "Hi"}],
                        "max_tokens": 4, "precision": "E5M3", "stream": True})
put("http_request", "get_models", "GET /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n")
put("http_request", "post_chat", "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
    "Authorization: Bearer 0123456789abcdef\r\nContent-Type: application/json\r\n"
    "Content-Length: %d\r\n\r\n%s" % (len(chat_body), chat_body))
put("http_request", "post_chunked", "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
    "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"pro\r\n10\r\nmpt\": \"x\", \"n\": 1}\r\n0\r\n\r\n")
put("http_request", "too_large", "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
    "Content-Length: 99999999\r\n\r\n{}")
put("http_request", "short_body", "POST /v1/completions HTTP/1.1\r\nContent-Length: 40\r\n\r\n{\"prompt\"")
put("http_request", "pipelined", "GET /v1/models HTTP/1.1\r\n\r\nGET /v1/models/otaro HTTP/1.0\r\n\r\n")
