"""A complete scoring service for grpolab's HTTP reward (configs/examples/http_reward.yaml):
1.0 when the completion's first number equals the `answer` column. Standard library only.

    python configs/examples/http_reward_server.py 8000
"""

import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def score(completion, answer) -> float:
    text = completion if isinstance(completion, str) else completion[-1]["content"]  # chat completions
    found = NUMBER.search(text)
    return float(bool(found) and float(found.group()) == float(answer))


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        rewards = [score(c, a) for c, a in zip(body["completions"], body["columns"]["answer"])]
        data = json.dumps({"rewards": rewards}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 8000), Handler).serve_forever()
