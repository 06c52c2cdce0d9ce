#!/usr/bin/python3
"""A real WebSocket client (Debian's python3-websockets) speaking the original
Komoku protocols to a running komoku, for integration/33_websocket_test.cc.

    ws_client.py SCENARIO HTTP_PORT BROKER_PORT [TOKEN]

Each scenario runs its exchanges and checks every answer; on the first wrong
one it prints what was sent, what came and what was expected, and exits 1.
Changes are published to the broker with mosquitto_pub, so pushes come from
MQTT ingest. Every wait is bounded (generous: a busy machine is slow).
"""

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import websockets

TIMEOUT = 60  # seconds for any one answer or push


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def publish(broker_port, topic, payloads):
    """Publishes each payload (QoS 1) through mosquitto_pub, in order."""
    binary = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
    subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(broker_port), "-q", "1", "-t", topic, "-l"],
        input="".join(p + "\n" for p in payloads).encode(),
        check=True,
        timeout=120,
    )


class Conn:
    """One connection: requests answered in order, pushes kept aside."""

    def __init__(self, ws, name):
        self.ws = ws
        self.name = name
        self.pushes = []

    async def recv(self):
        text = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        return json.loads(text)

    async def ask(self, request, expected=None):
        """Sends `request`; returns its answer (the first message that is not
        a push). With `expected`, checks the answer equals it."""
        await self.ws.send(request if isinstance(request, str) else json.dumps(request))
        while True:
            answer = await self.recv()
            if isinstance(answer, dict) and "pub" in answer:
                self.pushes.append(answer)
                continue
            break
        if expected is not None:
            check(answer == expected,
                  f"{self.name}: sent {request!r}\n  got      {answer!r}\n  expected {expected!r}")
        return answer

    async def push(self, match=lambda p: True):
        """The next push that `match` accepts (earlier ones are dropped)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            for i, p in enumerate(self.pushes):
                if match(p):
                    del self.pushes[: i + 1]
                    return p
            self.pushes.clear()
            left = deadline - time.monotonic()
            check(left > 0, f"{self.name}: no matching push within {TIMEOUT} s")
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            check(isinstance(msg, dict) and "pub" in msg, f"{self.name}: unasked answer {msg!r}")
            self.pushes.append(msg)


def url(port, version, token=None):
    u = f"ws://127.0.0.1:{port}/ws/{version}"
    return u + f"?token={token}" if token else u


def error_code(answer):
    check(isinstance(answer, dict) and "error" in answer, f"not an error: {answer!r}")
    check(isinstance(answer.get("message"), str) and answer["message"], f"no message: {answer!r}")
    return answer["error"]


async def scenario_v1(port, broker_port, token):
    async with websockets.connect(url(port, "v1"), ping_interval=None) as ws:
        c = Conn(ws, "v1")
        await c.ask({"get": {"key": "foo"}}, None)
        await c.ask({"put": {"key": "foo", "value": 123}}, "ack")
        await c.ask({"get": {"key": "foo"}}, 123)
        await c.ask({"put": {"key": "bar", "value": False, "time": time.time()}}, "ack")
        await c.ask({"get": {"key": "bar"}}, False)
        await c.ask({"put": {"key": "txt", "value": "text"}}, "ack")
        await c.ask({"get": {"key": "txt"}}, "text")
        # The Ruby agent's Time, as Ruby's JSON writes it, with and without
        # a fraction.
        await c.ask({"put": {"key": "rb", "value": 1, "time": "2026-12-05 18:40:00 +0000"}}, "ack")
        await c.ask({"put": {"key": "rb", "value": 2, "time": "2026-12-05 18:40:01.5 +0000"}},
                    "ack")
        await c.ask({"fetch": {"key": "rb", "since": 1796495000}},
                    [[1796496000.0, 1], [1796496001.5, 2]])
        await c.ask({"keys": {}}, {"foo": {"type": "numeric"}, "bar": {"type": "boolean"},
                                   "txt": {"type": "string"}, "rb": {"type": "numeric"}})
        await c.ask({"keys": {"include": ["value"]}},
                    {"foo": {"type": "numeric", "value": 123},
                     "bar": {"type": "boolean", "value": False},
                     "txt": {"type": "string", "value": "text"},
                     "rb": {"type": "numeric", "value": 2}})
        # sub, then a change from MQTT ingest.
        await c.ask({"sub": {"key": "foo"}}, "ack")
        publish(broker_port, "komoku/set/foo", ["234"])
        p = await c.push(lambda p: p["pub"]["key"] == "foo")
        got = p["pub"]
        check(got["prev"] == 123 and got["curr"] == 234 and got["value"] == 234 and
              got["previous_value"] == 123 and isinstance(got["time"], (int, float)),
              f"v1 pub: {p!r}")
        # fetch: oldest first, in opts or beside key, with a step, and a
        # boolean's timespans.
        rows = await c.ask({"fetch": {"key": "foo", "opts": {"since": time.time() - 3600}}})
        check([r[1] for r in rows] == [123, 234], f"v1 fetch: {rows!r}")
        check(rows[0][0] <= rows[1][0], f"v1 fetch order: {rows!r}")
        rows = await c.ask({"fetch": {"key": "foo", "since": time.time() - 3600, "step": "6H"}})
        check(isinstance(rows, list) and len(rows) >= 1 and
              all(isinstance(r, list) and len(r) == 2 for r in rows), f"v1 fetch step: {rows!r}")
        now = time.time()
        for i, v in enumerate([True, False, True]):
            await c.ask({"put": {"key": "door", "value": v, "time": now - 30 + 10 * i}}, "ack")
        spans = await c.ask({"fetch": {"key": "door", "since": now - 60, "as": "timespans"}})
        check(isinstance(spans, list) and len(spans) == 2, f"v1 timespans: {spans!r}")
        check(abs(spans[0][0] - (now - 30)) < 0.01 and abs(spans[0][1] - (now - 20)) < 0.01 and
              abs(spans[1][0] - (now - 10)) < 0.01, f"v1 timespans: {spans!r}")
        # Errors; the connection goes on.
        check(error_code(await c.ask("{not json")) == "invalid_json", "v1 invalid_json")
        check(error_code(await c.ask({"frobnicate": {}})) == "invalid_query", "v1 invalid_query")
        check(error_code(await c.ask({"put": {"key": "foo", "value": "high"}})) ==
              "invalid_value", "v1 invalid_value")
        await c.ask({"unsub": {"key": "foo"}}, "ack")
        publish(broker_port, "komoku/set/foo", ["345"])
        await c.ask({"get": {"key": "foo"}}, 345)
        check(not c.pushes, f"v1 push after unsub: {c.pushes!r}")


async def scenario_v2(port, broker_port, token):
    async with websockets.connect(url(port, "v2"), ping_interval=None) as ws:
        c = Conn(ws, "v2")
        await c.ask({"put": {"key": "w2s_list", "value": 8}}, {"result": "ok"})
        await c.ask({"get": {"key": "w2s_list"}}, {"result": 8})
        await c.ask({"get": {"key": "w2s_list"}, "query_id": "abc"},
                    {"result": 8, "query_id": "abc"})
        last = await c.ask({"last": {"key": "w2s_list"}, "query_id": 2})
        check(last["query_id"] == 2 and last["result"]["value"] == 8 and
              abs(last["result"]["time"] - time.time()) < 600, f"v2 last: {last!r}")
        keys = await c.ask({"keys": {}})
        check(keys["result"]["w2s_list"]["type"] == "numeric", f"v2 keys: {keys!r}")
        check(error_code(await c.ask({"put": {"key": "w2s_list", "value": "eight"}})) ==
              "invalid_value", "v2 invalid_value")
        await c.ask({"define": {"k": {"type": "uptime", "opts": {"max_time": 7}}}},
                    {"result": "ok"})
        await c.ask({"define": {"k2": {"type": "uptime", "max_time": 7}}}, {"result": "ok"})
        keys = await c.ask({"keys": {}})
        check(keys["result"]["k"]["type"] == "uptime" and
              keys["result"]["k2"]["opts"]["max_time"] == 7, f"v2 define: {keys!r}")
        # Counter: 0 -> +1 -> +2.4 -> -1 -> -1.2 gives 1.2.
        await c.ask({"define": {"cnt": {"type": "counter"}}}, {"result": "ok"})
        await c.ask({"increment": {"key": "cnt"}}, {"result": "ok"})
        await c.ask({"increment": {"key": "cnt", "step": 2.4}}, {"result": "ok"})
        await c.ask({"decrement": {"key": "cnt"}}, {"result": "ok"})
        await c.ask({"decrement": {"key": "cnt", "step": 1.2}}, {"result": "ok"})
        got = await c.ask({"get": {"key": "cnt"}})
        check(abs(got["result"] - 1.2) < 1e-9, f"v2 counter: {got!r}")
        await c.ask({"ping": "foo"}, {"result": {"pong": "foo"}})
        await c.ask({"ping": "foo", "query_id": 9}, {"result": {"pong": "foo"}, "query_id": 9})
        check(error_code(await c.ask({"frobnicate": {}})) == "invalid_query", "v2 invalid_query")
        check(error_code(await c.ask("{")) == "invalid_json", "v2 invalid_json")
        # sub before the key exists; pushes from MQTT ingest.
        await c.ask({"sub": {"key": "later"}}, {"result": "ok"})
        publish(broker_port, "komoku/set/later", ["123"])
        p = await c.push(lambda p: p["pub"]["key"] == "later")
        check(p["pub"]["value"] == 123 and p["pub"]["previous"] is None, f"v2 pub: {p!r}")
        publish(broker_port, "komoku/set/later", ["234"])
        p = await c.push(lambda p: p["pub"]["key"] == "later")
        check(p["pub"]["value"] == 234 and p["pub"]["previous"] == 123, f"v2 pub: {p!r}")
        # Deleted and re-created with another type: the pushes go on.
        await c.ask({"delete": {"key": "later", "confirm": True}}, {"result": "ok"})
        publish(broker_port, "komoku/set/later", ["on the move"])
        p = await c.push(lambda p: p["pub"]["key"] == "later")
        check(p["pub"]["value"] == "on the move" and p["pub"]["previous"] is None,
              f"v2 pub after re-creation: {p!r}")
        keys = await c.ask({"keys": {}})
        check(keys["result"]["later"]["type"] == "string", f"v2 re-created: {keys!r}")
        # fetch, stats, delete without confirm.
        rows = await c.ask({"fetch": {"key": "later", "from": "-1h"}})
        check([r[1] for r in rows["result"]] == ["on the move"], f"v2 fetch: {rows!r}")
        stats = await c.ask({"stats": {"key": "w2s_list", "from": "-1h"}})
        check(stats["result"]["type"] == "numeric" and stats["result"]["max"] == 8,
              f"v2 stats: {stats!r}")
        check(error_code(await c.ask({"delete": {"key": "later"}})) == "not_confirmed",
              "v2 delete without confirm")
        await c.ask({"unsub": {"key": "later"}}, {"result": "ok"})
        publish(broker_port, "komoku/set/later", ["gone quiet"])
        await c.ask({"get": {"key": "later"}}, {"result": "gone quiet"})
        check(not c.pushes, f"v2 push after unsub: {c.pushes!r}")


async def scenario_many(port, broker_port, token):
    """100 clients at once, each with its own key and a shared one."""
    n = 100
    conns = []
    for i in range(n):
        ws = await websockets.connect(url(port, "v2" if i % 2 else "v1"), ping_interval=None)
        conns.append(Conn(ws, f"client {i}"))

    async def setup(i, c):
        v2 = i % 2
        ok = {"result": "ok"} if v2 else "ack"
        await c.ask({"sub": {"key": "shared"}}, ok)
        await c.ask({"put": {"key": f"own/{i}", "value": i}}, ok)
        await c.ask({"get": {"key": f"own/{i}"}}, {"result": i} if v2 else i)

    await asyncio.gather(*(setup(i, c) for i, c in enumerate(conns)))
    publish(broker_port, "komoku/set/shared", ["42"])

    async def wait(i, c):
        p = await c.push(lambda p: p["pub"]["key"] == "shared")
        v = p["pub"]["value"]
        check(v == 42, f"client {i}: push {p!r}")

    await asyncio.gather(*(wait(i, c) for i, c in enumerate(conns)))
    await asyncio.gather(*(c.ws.close() for c in conns))


async def scenario_slow(port, broker_port, token):
    """A subscriber that stops reading is closed; a reading one gets every
    push and the last value is stored."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", port))
    slow = await websockets.connect(url(port, "v2"), sock=raw, ping_interval=None, max_queue=1,
                                    read_limit=1024, compression=None)
    good = await websockets.connect(url(port, "v2"), ping_interval=None, max_queue=None,
                                    compression=None)
    s, g = Conn(slow, "slow"), Conn(good, "good")
    await s.ask({"sub": {"key": "big"}}, {"result": "ok"})
    await g.ask({"sub": {"key": "big"}}, {"result": "ok"})
    count, per_round = 400, 5
    filler = "x" * 8000
    payloads = [f"{i:05d}{filler}" for i in range(count)]
    # The slow client reads nothing from here on. The good one reads each
    # round's pushes before the next round is published: its backlog stays
    # far under the bound however slowly this machine runs it.
    for start in range(0, count, per_round):
        publish(broker_port, "komoku/set/big", payloads[start:start + per_round])
        for i in range(start, start + per_round):
            p = await g.push(lambda p: p["pub"]["key"] == "big")
            check(p["pub"]["value"] == payloads[i], f"good client: push {i} missing or late")
    await g.ask({"get": {"key": "big"}}, {"result": payloads[-1]})
    await good.close()
    # The slow one was closed by the server (1008) once it fell behind.
    try:
        while True:
            await asyncio.wait_for(slow.recv(), TIMEOUT)
    except websockets.exceptions.ConnectionClosed:
        pass
    check(slow.closed, "the slow client is still connected")


def handshake(port, path="/ws/v2"):
    """A raw connection after a correct handshake, for frames no library
    sends."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        check(chunk, f"handshake: connection closed after {head!r}")
        head += chunk
    check(head.startswith(b"HTTP/1.1 101"), f"handshake answered {head!r}")
    return sock


def read_close(sock):
    """The close code the server sends before closing, or None."""
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    # A close frame: 0x88, length, then the code (server frames are unmasked).
    i = data.find(b"\x88")
    if i < 0 or len(data) < i + 4:
        return None, data
    return int.from_bytes(data[i + 2:i + 4], "big"), data


async def scenario_bad(port, broker_port, token):
    # An unmasked client frame breaks RFC 6455 (5.1): 1002.
    sock = handshake(port)
    payload = b'{"ping":"x"}'
    sock.sendall(bytes([0x81, len(payload)]) + payload)
    code, data = read_close(sock)
    check(code == 1002, f"unmasked frame: close {code}, read {data!r}")
    sock.close()
    # A reserved opcode: 1002.
    sock = handshake(port)
    mask = os.urandom(4)
    sock.sendall(bytes([0x83, 0x80 | 2]) + mask + bytes(b ^ mask[i % 4]
                                                        for i, b in enumerate(b"hi")))
    code, data = read_close(sock)
    check(code == 1002, f"reserved opcode: close {code}, read {data!r}")
    sock.close()
    # A frame header that promises more than the limit: refused at once.
    sock = handshake(port)
    sock.sendall(bytes([0x81, 0x80 | 127]) + (1 << 40).to_bytes(8, "big") + os.urandom(4))
    code, data = read_close(sock)
    check(code == 1009, f"huge frame header: close {code}, read {data!r}")
    sock.close()
    # An oversized message through the library: 1009.
    ws = await websockets.connect(url(port, "v1"), ping_interval=None, compression=None)
    try:
        await ws.send(json.dumps({"put": {"key": "big", "value": "y" * 100000}}))
        await asyncio.wait_for(ws.recv(), TIMEOUT)
        raise Failure("an oversized message was answered")
    except websockets.exceptions.ConnectionClosed as e:
        check(e.code == 1009, f"oversized message: close {e.code}")
    # A text frame that is not UTF-8: 1007.
    ws = await websockets.connect(url(port, "v1"), ping_interval=None, compression=None)
    sock = handshake(port)
    mask = os.urandom(4)
    bad = b'{"get":"\xff\xfe"}'
    sock.sendall(bytes([0x81, 0x80 | len(bad)]) + mask +
                 bytes(b ^ mask[i % 4] for i, b in enumerate(bad)))
    code, data = read_close(sock)
    check(code == 1007, f"bad UTF-8: close {code}, read {data!r}")
    sock.close()
    # The service is fine: a new connection works, and so does one opened
    # before.
    c = Conn(ws, "after")
    await c.ask({"put": {"key": "fine", "value": 1}}, "ack")
    await c.ask({"get": {"key": "fine"}}, 1)
    await ws.close()
    # A plain GET of a WebSocket path: 426 and a message.
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(f"GET /ws/v1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    _, data = read_close(sock)
    check(data.startswith(b"HTTP/1.1 426"), f"plain GET: {data[:200]!r}")


async def scenario_auth(port, broker_port, token):
    for where in ("none", "wrong", "wrong-query"):
        try:
            if where == "none":
                ws = await websockets.connect(url(port, "v2"), ping_interval=None)
            elif where == "wrong":
                ws = await websockets.connect(url(port, "v2"), ping_interval=None,
                                              extra_headers={"Authorization": "Bearer nope"})
            else:
                ws = await websockets.connect(url(port, "v2", "nope"), ping_interval=None)
            await ws.close()
            raise Failure(f"connected with token {where}")
        except websockets.exceptions.InvalidStatusCode as e:
            check(e.status_code == 401, f"token {where}: status {e.status_code}")
    async with websockets.connect(url(port, "v2"), ping_interval=None,
                                  extra_headers={"Authorization": f"Bearer {token}"}) as ws:
        await Conn(ws, "header").ask({"ping": 1}, {"result": {"pong": 1}})
    async with websockets.connect(url(port, "v1", token), ping_interval=None) as ws:
        await Conn(ws, "query").ask({"put": {"key": "auth", "value": 1}}, "ack")


async def scenario_hold(port, broker_port, token):
    """Stays connected until the server goes away: it must say so (1001)."""
    ws = await websockets.connect(url(port, "v2"), ping_interval=None)
    await Conn(ws, "hold").ask({"sub": {"key": "x"}}, {"result": "ok"})
    print("connected", flush=True)
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 120)
    except websockets.exceptions.ConnectionClosed as e:
        check(e.code == 1001, f"closed with {e.code}, not 1001 (going away)")


SCENARIOS = {
    "v1": scenario_v1,
    "v2": scenario_v2,
    "many": scenario_many,
    "slow": scenario_slow,
    "bad": scenario_bad,
    "auth": scenario_auth,
    "hold": scenario_hold,
}


def main():
    name, port, broker_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    token = sys.argv[4] if len(sys.argv) > 4 else None
    try:
        asyncio.run(SCENARIOS[name](port, broker_port, token))
    except Failure as e:
        print(f"FAILED {name}: {e}", flush=True)
        sys.exit(1)
    print(f"OK {name}", flush=True)


if __name__ == "__main__":
    main()
