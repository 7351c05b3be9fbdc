"""Editor support for real: the YAML language server (what VS Code's Red Hat YAML extension runs)
opens a config that names the schema in its first line, offers `learning_rate` under
`training:`, and flags `lerning_rate`. Skipped when node or yaml-language-server is missing
(`npm install -g yaml-language-server`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER = shutil.which("yaml-language-server")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(
        SERVER is None, reason="yaml-language-server is not installed (npm install -g yaml-language-server)"
    ),
]


class Client:
    """A minimal LSP client over stdio (JSON-RPC with Content-Length framing)."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [SERVER, "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.next_id = 0
        self.notifications: list[dict] = []

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.proc.stdin.write(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        self.proc.stdin.flush()

    def read(self) -> dict:
        length = None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the language server exited")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return json.loads(self.proc.stdout.read(length))

    def handle(self, message: dict) -> None:
        """Answer the server's own requests (configuration, capability registration)."""
        if "id" in message and "method" in message:
            result = None
            if message["method"] == "workspace/configuration":
                result = [
                    SETTINGS["yaml"] if item.get("section") == "yaml" else None for item in message["params"]["items"]
                ]
            self.send({"id": message["id"], "result": result})
        elif "method" in message:
            self.notifications.append(message)

    def request(self, method: str, params: dict, timeout: float = 60) -> dict:
        self.next_id += 1
        my_id = self.next_id
        self.send({"id": my_id, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.read()
            if message.get("id") == my_id and "method" not in message:
                return message.get("result")
            self.handle(message)
        raise TimeoutError(method)

    def notify(self, method: str, params: dict) -> None:
        self.send({"method": method, "params": params})

    def diagnostics(self, uri: str, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for note in self.notifications:
                if note["method"] == "textDocument/publishDiagnostics" and note["params"]["uri"] == uri:
                    if note["params"]["diagnostics"]:
                        return note["params"]["diagnostics"]
            self.handle(self.read())
        return []

    def close(self) -> None:
        try:
            self.request("shutdown", {}, timeout=10)
            self.notify("exit", {})
        finally:
            self.proc.kill()
            self.proc.wait(timeout=10)


SETTINGS = {"yaml": {"validate": True, "completion": True, "hover": True, "schemaStore": {"enable": False}}}


@pytest.fixture
def client():
    c = Client()
    root = REPO.as_uri()
    c.request(
        "initialize",
        {
            "processId": None,
            "rootUri": root,
            "workspaceFolders": [{"uri": root, "name": "grpolab"}],
            "capabilities": {
                "workspace": {"configuration": True},
                "textDocument": {"completion": {"completionItem": {"snippetSupport": False}}},
            },
        },
    )
    c.notify("initialized", {})
    c.notify("workspace/didChangeConfiguration", {"settings": SETTINGS})
    yield c
    c.close()


def open_doc(client: Client, name: str, text: str) -> str:
    uri = (REPO / "configs" / name).as_uri()  # never written: the server resolves the schema from here
    client.notify(
        "textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": text}}
    )
    return uri


def test_language_server_flags_a_misspelt_key(client):
    text = (REPO / "configs" / "grpo_local.yaml").read_text().replace("  learning_rate:", "  lerning_rate:")
    uri = open_doc(client, "editor_check_diag.yaml", text)
    messages = [d["message"] for d in client.diagnostics(uri)]
    assert any("lerning_rate" in m for m in messages), messages
    line = next(i for i, ln in enumerate(text.splitlines()) if "lerning_rate" in ln)
    assert any(d["range"]["start"]["line"] == line for d in client.diagnostics(uri))


def test_language_server_completes_learning_rate_under_training(client):
    text = "# yaml-language-server: $schema=grpolab.schema.json\ntraining:\n  \n"
    uri = open_doc(client, "editor_check_completion.yaml", text)
    result = client.request(
        "textDocument/completion", {"textDocument": {"uri": uri}, "position": {"line": 2, "character": 2}}
    )
    items = result["items"] if isinstance(result, dict) else result
    labels = {item["label"] for item in items}
    assert "learning_rate" in labels and "epsilon_high" not in labels, sorted(labels)[:20]
    (item,) = [item for item in items if item["label"] == "learning_rate"]
    assert json.dumps(item.get("documentation", "")).find("peak learning rate") >= 0, item  # schema.py's words
