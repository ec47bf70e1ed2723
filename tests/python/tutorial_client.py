#!/usr/bin/env python3
"""The RabbitMQ tutorial's RPC client (tutorial six, pika), speaking this
framework's protocol: the reply queue is declared exactly as the tutorial
does, server-named and exclusive (`queue_declare(queue='', exclusive=True)`,
a name like `amq.gen-JzTY20BRgKO-HjmUJj0wLg`); only the request's `type` and
its MessagePack body differ from the tutorial (docs/PROTOCOL.md, sections 2
and 4).

usage: tutorial_client.py QUEUE N...

Prints the reply queue's kind (`reply queue: amq.gen-*`), then one line per
call: `fib(30) = 832040`, or `fib(94) failed: {...}`. Exits non-zero if a
reply does not come within 10 s.
"""

import os
import sys
import time
import uuid

import msgpack
import pika


class FibonacciRpcClient(object):
    def __init__(self, url, queue):
        self.queue = queue
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()

        result = self.channel.queue_declare(queue="", exclusive=True)
        self.callback_queue = result.method.queue

        self.channel.basic_consume(
            queue=self.callback_queue,
            on_message_callback=self.on_response,
            auto_ack=True,
        )

        self.response = None
        self.corr_id = None

    def on_response(self, ch, method, props, body):
        if self.corr_id == props.correlation_id:
            self.response = body

    def call(self, n, timeout_s=10):
        self.response = None
        self.corr_id = str(uuid.uuid4())
        self.channel.basic_publish(
            exchange="",
            routing_key=self.queue,
            properties=pika.BasicProperties(
                reply_to=self.callback_queue,
                correlation_id=self.corr_id,
                type="fib",
                content_type="application/msgpack",
            ),
            body=msgpack.packb([n]),
        )
        # The tutorial waits forever (`time_limit=None`); a test must not.
        deadline = time.monotonic() + timeout_s
        while self.response is None:
            if time.monotonic() > deadline:
                raise TimeoutError("no reply to fib(%d) within %ss" % (n, timeout_s))
            self.connection.process_data_events(time_limit=0.1)
        ((key, value),) = msgpack.unpackb(self.response, raw=False).items()
        return key, value


def main():
    queue, numbers = sys.argv[1], [int(n) for n in sys.argv[2:]]
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    fibonacci_rpc = FibonacciRpcClient(url, queue)
    prefix = "amq.gen-"
    kind = prefix + "*" if fibonacci_rpc.callback_queue.startswith(prefix) else "other"
    print("reply queue: %s" % kind)
    for n in numbers:
        key, value = fibonacci_rpc.call(n)
        if key == "ok":
            print("fib(%d) = %d" % (n, value))
        else:
            print("fib(%d) failed: %s %s" % (n, key, value))
    fibonacci_rpc.connection.close()


if __name__ == "__main__":
    main()
