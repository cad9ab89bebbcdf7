"""A stand-in OpenTelemetry collector for benchmarks, in its own process: takes OTLP/HTTP exports
(POST /v1/traces, /v1/metrics; protobuf, gzip or not), counts the spans and metric exports, and
answers as a collector does. GET /count says {"spans": N, "metric_exports": M}.
Usage: python bench/otlp_sink.py PORT
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans = 0
        self.metric_exports = 0


def handler(counts: Counts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path == "/v1/traces":
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                n = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
                with counts.lock:
                    counts.spans += n
            elif self.path == "/v1/metrics":
                with counts.lock:
                    counts.metric_exports += 1
            self._reply(b"", "application/x-protobuf")  # an empty Export*ServiceResponse

        def do_GET(self) -> None:
            with counts.lock:
                data = {"spans": counts.spans, "metric_exports": counts.metric_exports}
            self._reply(json.dumps(data).encode(), "application/json")

        def _reply(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), handler(Counts()))
    server.serve_forever()


if __name__ == "__main__":
    main()
