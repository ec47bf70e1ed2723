#!/usr/bin/env python3
"""A client in Python that sends what PROTOCOL.md section 2 says a request
may carry besides its arguments: W3C trace context (from OpenTelemetry when
the opentelemetry SDK is installed, else made by hand), the caller's deadline
(`rpc-deadline`, milliseconds since the Unix epoch), call metadata, and its
identity (`user_id`, the user it connects as, which the broker checks).

usage: context_client.py QUEUE

Calls `context` on the test service Lab, and prints, one per line:
`sent trace_id=<32 hex> span_id=<16 hex> otel=<yes|no>`, then what the
handler saw: `seen trace_id=...`, `seen user_id=...`, `seen tenant=...`,
`seen time_left_ok=<yes|no>` (the time left is above 0 and at most the
timeout).
"""

import os
import sys
import time
import uuid

import msgpack
import pika

TIMEOUT_S = 10

try:
    from opentelemetry import propagate, trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())
    TRACER = trace.get_tracer("context_client")
except ImportError:
    TRACER = None


def main():
    queue = sys.argv[1]
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    parameters = pika.URLParameters(url)
    connection = pika.BlockingConnection(parameters)
    channel = connection.channel()
    reply_queue = channel.queue_declare(queue="", exclusive=True).method.queue
    replies = {}
    channel.basic_consume(
        queue=reply_queue,
        on_message_callback=lambda ch, method, props, body: replies.update(
            {props.correlation_id: body}
        ),
        auto_ack=True,
    )

    headers = {"tenant": "py"}
    if TRACER is not None:
        span = TRACER.start_span("python.call", kind=trace.SpanKind.CLIENT)
        context = trace.set_span_in_context(span)
        propagate.inject(headers, context=context)
        span_context = span.get_span_context()
        trace_id, span_id = span_context.trace_id, span_context.span_id
    else:
        span = None
        trace_id, span_id = uuid.uuid4().int, uuid.uuid4().int >> 64
        headers["traceparent"] = "00-%032x-%016x-01" % (trace_id, span_id)
    print("sent trace_id=%032x span_id=%016x otel=%s"
          % (trace_id, span_id, "yes" if TRACER is not None else "no"))
    headers["rpc-deadline"] = int((time.time() + TIMEOUT_S) * 1000)

    correlation_id = str(uuid.uuid4())
    channel.basic_publish(
        exchange="",
        routing_key=queue,
        properties=pika.BasicProperties(
            type="context",
            correlation_id=correlation_id,
            reply_to=reply_queue,
            content_type="application/msgpack",
            expiration=str(TIMEOUT_S * 1000),
            user_id=parameters.credentials.username,
            headers=headers,
        ),
        body=msgpack.packb([]),
    )
    deadline = time.monotonic() + TIMEOUT_S
    while correlation_id not in replies:
        if time.monotonic() > deadline:
            raise TimeoutError("no reply within %ss" % TIMEOUT_S)
        connection.process_data_events(time_limit=0.1)
    if span is not None:
        span.end()
    ((key, report),) = msgpack.unpackb(replies[correlation_id], raw=False).items()
    assert key == "ok", (key, report)
    print("seen trace_id=%s" % report["trace_id"])
    print("seen user_id=%s" % report["user_id"])
    print("seen tenant=%s" % dict(report["metadata"]).get("tenant"))
    left = report["time_left_ms"]
    print("seen time_left_ok=%s" % ("yes" if left is not None and 0 < left <= TIMEOUT_S * 1000 else "no"))
    connection.close()


if __name__ == "__main__":
    main()
