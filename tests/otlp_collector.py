#!/usr/bin/env python3
"""A minimal OpenTelemetry collector for the tests: OTLP/HTTP (protobuf) traces.

Usage: otlp_collector.py   (listens on 127.0.0.1, a free port)

Prints "listening PORT", then one JSON line per span received at POST /v1/traces:
  {"name": ..., "service": ..., "trace_id": hex, "span_id": hex, "parent": hex,
   "attributes": {key: value}}
decoded with the OpenTelemetry project's own protobuf definitions
(opentelemetry-proto), so a span the gateway encodes wrongly fails here.
Answers 200 with an empty ExportTraceServiceResponse.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            service = next((value(a.value) for a in rs.resource.attributes if a.key == "service.name"), None)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    print(json.dumps({
                        "name": s.name,
                        "service": service,
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent": s.parent_span_id.hex(),
                        "attributes": {a.key: value(a.value) for a in s.attributes},
                    }), flush=True)
        out = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
