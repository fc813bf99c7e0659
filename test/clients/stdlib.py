"""Python's standard library (urllib.request + ssl) against the gateway, configured only by the
`clientEnv` variables: OLLAMA_HOST, OLLAMA_API_KEY, OPENAI_BASE_URL, OPENAI_API_KEY, and
SSL_CERT_FILE, which ssl.create_default_context() reads through OpenSSL's default paths.
`use` makes calls that must succeed; `refuse` prints what each route family's error says.
Prints JSON on stdout."""
import json
import os
import ssl
import sys
import urllib.error
import urllib.request

CONTEXT = ssl.create_default_context()
OLLAMA = os.environ["OLLAMA_HOST"]
OPENAI = os.environ["OPENAI_BASE_URL"]
MODEL = "gemma3:1b"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Why is the sky blue?"}]}


def call(url, key, body=None, extra_headers=None):
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(extra_headers or {})}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    return urllib.request.urlopen(request, context=CONTEXT, timeout=15)


def error_of(url, key, body=None):
    """Status, and the message and code as each envelope holds them."""
    try:
        call(url, key, body).read()
    except urllib.error.HTTPError as error:
        parsed = json.loads(error.read())
        inner = parsed["error"]
        if isinstance(inner, str):  # Ollama: {"error": "..."}
            return {"status": error.code, "message": inner}
        return {"status": error.code, "message": inner["message"], "type": inner["type"], "code": inner.get("code")}
    raise SystemExit(f"{url} was not refused")


def use():
    key = os.environ["OLLAMA_API_KEY"]
    models = [m["name"] for m in json.load(call(f"{OLLAMA}/api/tags", key))["models"]]
    chat = ""
    with call(f"{OLLAMA}/api/chat", key, {**CHAT, "stream": True}) as response:
        for line in response:  # NDJSON: one object a line
            chat += json.loads(line)["message"]["content"]
    completion = json.load(call(f"{OPENAI}/chat/completions", os.environ["OPENAI_API_KEY"], CHAT))
    return {"models": models, "chat": chat, "openai": completion["choices"][0]["message"]["content"]}


def refuse():
    key = os.environ["OPENAI_API_KEY"]
    anthropic = {"model": MODEL, "max_tokens": 8, "messages": CHAT["messages"]}
    return {
        "ollama": error_of(f"{OLLAMA}/api/chat", os.environ["OLLAMA_API_KEY"], CHAT),
        "openai": error_of(f"{OPENAI}/chat/completions", key, CHAT),
        "anthropic": error_of(f"{OPENAI}/messages", key, anthropic),
    }


print(json.dumps(use() if sys.argv[1] == "use" else refuse()))
