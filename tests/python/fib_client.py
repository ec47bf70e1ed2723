#!/usr/bin/env python3
"""A Fibonacci client written from docs/PROTOCOL.md alone, with pika and msgpack.

usage: fib_client.py QUEUE N...

Prints one line per call: `fib(30) = 832040`, `fib(94) failed: {...}` for an
application error, `fib(N) fault: KIND: MESSAGE` for a fault. Then calls a
method that does not exist (expecting an `unknown_method` fault) and a queue
that does not exist (expecting the broker to return the request).
"""

import os
import sys
import uuid

import msgpack
import pika

CONTENT_TYPE = "application/msgpack"


class RpcClient:
    def __init__(self, url):
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        # Publisher confirms + mandatory: a request no queue takes raises
        # pika.exceptions.UnroutableError (section 7).
        self.channel.confirm_delivery()
        # An exclusive reply queue with the `rpc-reply.` prefix (section 4).
        self.reply_queue = "rpc-reply.%s.1" % uuid.uuid4().hex
        self.channel.queue_declare(queue=self.reply_queue, exclusive=True, auto_delete=True)
        self.channel.basic_consume(
            queue=self.reply_queue, on_message_callback=self._on_reply, auto_ack=True
        )
        self.replies = {}

    def _on_reply(self, channel, method, properties, body):
        # Replies for calls nobody waits for are dropped (section 7).
        if properties.correlation_id in self.waiting:
            self.replies[properties.correlation_id] = body

    def call(self, queue, method, args, timeout_s=10):
        correlation_id = str(uuid.uuid4())
        self.waiting = {correlation_id}
        self.channel.basic_publish(
            exchange="",
            routing_key=queue,
            mandatory=True,
            properties=pika.BasicProperties(
                type=method,
                correlation_id=correlation_id,
                reply_to=self.reply_queue,
                content_type=CONTENT_TYPE,
                expiration=str(timeout_s * 1000),
            ),
            body=msgpack.packb(list(args)),
        )
        self.connection.process_data_events(time_limit=0)
        deadline = timeout_s
        while correlation_id not in self.replies and deadline > 0:
            self.connection.process_data_events(time_limit=0.1)
            deadline -= 0.1
        body = self.replies.pop(correlation_id, None)
        if body is None:
            raise TimeoutError("no reply to %s within %ss" % (method, timeout_s))
        reply = msgpack.unpackb(body, raw=False)
        if not isinstance(reply, dict) or len(reply) != 1:
            raise ValueError("a reply is a map with exactly one key: %r" % (reply,))
        ((key, value),) = reply.items()
        return key, value


def main():
    queue, numbers = sys.argv[1], [int(n) for n in sys.argv[2:]]
    client = RpcClient(os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"))
    for n in numbers:
        key, value = client.call(queue, "fib", [n])
        if key == "ok":
            print("fib(%d) = %d" % (n, value))
        elif key == "err":
            print("fib(%d) failed: %s" % (n, value))
        else:
            print("fib(%d) fault: %s: %s" % (n, value["kind"], value["message"]))
    key, value = client.call(queue, "fibb", [1])
    print("fibb: %s %s" % (key, value["kind"]))
    try:
        client.call(queue + ".missing", "fib", [1])
        print("missing queue: answered?!")
    except pika.exceptions.UnroutableError:
        print("missing queue: returned by the broker")
    client.connection.close()


if __name__ == "__main__":
    main()
