"""Real local servers for the reward tests: a scoring service speaking grpolab's HTTP reward
protocol, and an OpenAI-compatible chat-completions server answering from a real model. Both
are stdlib HTTP servers on 127.0.0.1 (an ephemeral port), one thread per request."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalServer:
    """`with LocalServer(handle) as server:` runs `handle(path, body, headers) -> (status, payload)`;
    payload is JSON-encoded unless it is bytes. `server.requests` records (path, body, headers),
    header names lower-cased."""

    def __init__(self, handle):
        self.handle, self.requests = handle, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append((self.path, body, headers))
                status, payload = outer.handle(self.path, body, headers)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def slow(seconds: float, then):
    def handle(path, body, headers):
        time.sleep(seconds)
        return then(path, body, headers)

    return handle


class ModelChatServer(LocalServer):
    """POST /v1/chat/completions answered by greedy generation from a causal LM: the last user
    message is the model's prompt. `answers` records what the model said."""

    def __init__(self, model_path: str, model_name: str = "tiny-judge"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path).eval()
        self.model_name, self.answers = model_name, []
        self.lock = threading.Lock()  # one generate at a time: the model is shared between request threads

        def handle(path, body, headers):
            if path != "/v1/chat/completions":
                return 404, {"error": {"message": f"no route {path}"}}
            prompt = body["messages"][-1]["content"]
            enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            with self.lock, torch.no_grad():
                out = self.model.generate(
                    **enc,
                    do_sample=False,
                    max_new_tokens=min(int(body.get("max_tokens") or 8), 8),
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                )
            text = self.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            self.answers.append((prompt, text))
            return 200, {
                "id": f"chatcmpl-{len(self.answers)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", self.model_name),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": enc["input_ids"].shape[1], "completion_tokens": 1, "total_tokens": 1},
            }

        super().__init__(handle)
