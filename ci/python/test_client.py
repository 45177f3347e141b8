"""Shoal from another language: a Python client generated from proto/shoal.proto
by grpcio-tools, against a real sharded dev cluster, and the same calls through
the HTTP/JSON gateway with the standard library.

Run by ci/python-client.sh, which installs the packages, generates the stubs
and starts the cluster; it passes the addresses in the environment:
  SHOAL_CONTROLLER   the shard controller's members, host:port,...
  SHOAL_STANDBY      "GROUP=ID=HOST:PORT,..." for a data group not yet joined
  SHOAL_HTTP         a node's HTTP gateway, host:port
  SHOAL_LONE         a three-process standalone group, host:port,... (for
                     UNAVAILABLE: the script stops two of them)
  SHOAL_LONE_PIDS    their process ids
  SHOAL_TOKEN_FILE   the dev cluster's token, an administrator's identity
"""

import base64
import json
import os
import random
import signal
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request

import grpc
from grpc_status import rpc_status
from google.rpc import error_details_pb2

import shoal_pb2 as pb
import shoal_pb2_grpc as rpc

KIND = pb.ErrorDetail.Kind
ROUTED = (("shoal-routed", "1"),)
with open(os.environ["SHOAL_TOKEN_FILE"]) as token_file:
    ADMIN = (("authorization", "Bearer " + token_file.read().strip()),)


# ---------------------------------------------------------------- shard function

def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), bit by bit, written from its definition."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def shard_of(key: bytes, shard_count: int) -> int:
    return crc32c(key) % shard_count


# ---------------------------------------------------------------- errors

def detail_of(error: grpc.RpcError):
    """Shoal's ErrorDetail and the standard details, decoded from the
    google.rpc.Status the call carries."""
    status = rpc_status.from_call(error)
    assert status is not None, f"no rich status on {error!r}"
    found = {}
    for any_ in status.details:
        for name, message in (
            ("shoal", pb.ErrorDetail()),
            ("bad_request", error_details_pb2.BadRequest()),
            ("retry_info", error_details_pb2.RetryInfo()),
        ):
            if any_.Is(message.DESCRIPTOR):
                any_.Unpack(message)
                found[name] = message
    assert "shoal" in found, f"no ErrorDetail in {status}"
    return found


def expect_error(call, kind):
    try:
        call()
    except grpc.RpcError as error:
        found = detail_of(error)
        got = found["shoal"].kind
        assert got == kind, f"expected {KIND.Name(kind)}, got {KIND.Name(got)}: {error.details()}"
        return found
    raise AssertionError(f"expected {KIND.Name(kind)}, the call succeeded")


def answered_with(call, kind):
    """The details of the `kind` error `call` fails with; other failures
    propagate (so that a caller can follow a leader hint)."""
    try:
        call()
    except grpc.RpcError as error:
        found = detail_of(error)
        if found["shoal"].kind == kind:
            return found
        raise
    raise AssertionError(f"expected {KIND.Name(kind)}, the call succeeded")


# ---------------------------------------------------------------- a routing client

class Cluster:
    """Routes each key with the documented shard function and the
    controller's configuration, follows leader hints, and refreshes the
    configuration on WRONG_GROUP: what a smart client in any language does."""

    def __init__(self, controller):
        self.controller = controller
        self.channels = {}
        self.config = None
        self.client_id = random.getrandbits(63)
        self.seq = 0
        # A session says when it began (see WriteId in shoal.proto).
        self.opened_at = int(time.time() * 1000)

    def channel(self, addr):
        if addr not in self.channels:
            self.channels[addr] = grpc.insecure_channel(addr)
        return self.channels[addr]

    def kv(self, addr):
        return rpc.KvStub(self.channel(addr))

    def admin(self, addr):
        return rpc.AdminStub(self.channel(addr))

    def on_group(self, members, call):
        """`call(addr)` on the group's leader, found by following hints."""
        targets = list(members)
        for _ in range(40):
            addr = targets[0]
            try:
                return call(addr)
            except grpc.RpcError as error:
                detail = detail_of(error)["shoal"]
                if detail.kind == KIND.NOT_LEADER and detail.HasField("leader_addr"):
                    targets = [detail.leader_addr] + targets
                elif detail.kind in (KIND.NOT_LEADER, KIND.UNAVAILABLE):
                    targets = targets[1:] + targets[:1]
                    time.sleep(0.1)
                else:
                    raise
        raise AssertionError("no leader answered")

    def query(self):
        reply = self.on_group(self.controller, lambda a: self.admin(a).Query(pb.QueryRequest()))
        self.config = reply.config
        return self.config

    def members_of(self, key: bytes):
        if self.config is None:
            self.query()
        group = self.config.shards[shard_of(key, len(self.config.shards))]
        return list(self.config.groups[group].members.values())

    def routed(self, key: bytes, call):
        for _ in range(50):
            try:
                return self.on_group(self.members_of(key), call)
            except grpc.RpcError as error:
                if detail_of(error)["shoal"].kind != KIND.WRONG_GROUP:
                    raise
                time.sleep(0.1)
                self.query()
        raise AssertionError("the key's shard never settled")

    def write_id(self):
        self.seq += 1
        return pb.WriteId(
            client_id=self.client_id, seq=self.seq, opened_at=self.opened_at, floor=self.opened_at
        )

    def put(self, key, value):
        request = pb.PutRequest(key=key, value=value, id=self.write_id())
        self.routed(key, lambda a: self.kv(a).Put(request, metadata=ROUTED))

    def get(self, key):
        reply = self.routed(key, lambda a: self.kv(a).Get(pb.GetRequest(key=key), metadata=ROUTED))
        return reply.value if reply.HasField("value") else None

    def delete(self, key):
        request = pb.DeleteRequest(key=key, id=self.write_id())
        return self.routed(key, lambda a: self.kv(a).Delete(request, metadata=ROUTED)).existed

    def cas(self, key, expected, new):
        request = pb.CasRequest(key=key, id=self.write_id())
        if expected is not None:
            request.expected = expected
        if new is not None:
            request.new_value = new
        reply = self.routed(key, lambda a: self.kv(a).CompareAndSwap(request, metadata=ROUTED))
        return reply.swapped, (reply.current if reply.HasField("current") else None)

    def scan(self, start, end, limit):
        """Every group's served shards, merged: the same as Shoal's client."""
        config = self.query()
        by_group = {}
        for shard, group in enumerate(config.shards):
            by_group.setdefault(group, []).append(shard)
        entries = []
        for group, shards in sorted(by_group.items()):
            request = pb.ScanRequest(start=start, end=end, limit=limit, shards=shards)
            members = list(config.groups[group].members.values())
            reply = self.on_group(members, lambda a: self.kv(a).Scan(request, metadata=ROUTED))
            assert sorted(reply.served) == shards, (reply.served, shards)
            entries += [(e.key, e.value) for e in reply.entries]
        return sorted(entries)[:limit]


# ---------------------------------------------------------------- tests

CLUSTER = Cluster(os.environ["SHOAL_CONTROLLER"].split(","))


def test_the_shard_function_matches_its_documented_vectors():
    assert crc32c(b"123456789") == 0xE3069283
    assert [shard_of(k, 64) for k in [b"", b"a", b"key-000001", b"user:42"]] == [0, 48, 19, 45]
    config = CLUSTER.query()
    assert len(config.shards) == 64 and config.num >= 1, config


def test_every_data_call_through_routing():
    keys = [f"py-{i:03}".encode() for i in range(20)]
    for key in keys:
        CLUSTER.put(key, b"v-" + key)
    for key in keys:
        assert CLUSTER.get(key) == b"v-" + key, key
    assert CLUSTER.get(b"py-absent") is None
    assert CLUSTER.cas(keys[0], b"wrong", b"x") == (False, b"v-" + keys[0])
    assert CLUSTER.cas(keys[0], b"v-" + keys[0], b"x") == (True, b"v-" + keys[0])
    assert CLUSTER.cas(b"py-fresh", None, b"1") == (True, None)
    assert CLUSTER.delete(keys[1]) is True
    assert CLUSTER.delete(keys[1]) is False
    found = CLUSTER.scan(b"py-", b"py-~", 100)
    expect = sorted([(keys[0], b"x")] + [(k, b"v-" + k) for k in keys[2:]] + [(b"py-fresh", b"1")])
    assert found == expect, found
    assert len(CLUSTER.scan(b"py-", b"", 5)) == 5
    status = CLUSTER.kv(CLUSTER.controller[0]).Status(pb.StatusRequest())
    assert status.role in ("leader", "follower") and len(status.members) == 3, status
    binary = bytes(range(256))[:200]
    CLUSTER.put(binary, binary)
    assert CLUSTER.get(binary) == binary


def test_a_client_that_does_not_route_is_forwarded():
    # Plain stubs, no routing and no mark: every node answers every key.
    config = CLUSTER.query()
    anywhere = list(CLUSTER.controller) + [
        addr for group in config.groups.values() for addr in group.members.values()
    ]
    for i, addr in enumerate(anywhere):
        key = f"thin-{i}".encode()
        stub = CLUSTER.kv(addr)
        stub.Put(pb.PutRequest(key=key, value=b"t"))
        assert stub.Get(pb.GetRequest(key=key)).value == b"t"
        assert stub.CompareAndSwap(pb.CasRequest(key=key, expected=b"t", new_value=b"u")).swapped
        assert stub.Delete(pb.DeleteRequest(key=key)).existed
    entries = CLUSTER.kv(anywhere[0]).Scan(pb.ScanRequest(start=b"py-", end=b"py-~", limit=1000)).entries
    assert len(entries) == len(CLUSTER.scan(b"py-", b"py-~", 1000)), len(entries)


def test_every_error_kind_decodes_with_grpc_status():
    any_node = CLUSTER.controller[0]
    stub = CLUSTER.kv(any_node)
    found = expect_error(lambda: stub.Put(pb.PutRequest(key=b"", value=b"v")), KIND.KEY_EMPTY)
    assert found["bad_request"].field_violations[0].field == "key"
    found = expect_error(lambda: stub.Put(pb.PutRequest(key=b"k" * 4097, value=b"v")), KIND.KEY_TOO_LARGE)
    assert (found["shoal"].limit, found["shoal"].actual) == (4096, 4097)
    found = expect_error(lambda: stub.Put(pb.PutRequest(key=b"k", value=b"v" * 131073)), KIND.VALUE_TOO_LARGE)
    assert found["bad_request"].field_violations[0].field == "value"

    # Marked as routed, a request to the wrong group or to a follower is
    # answered, not forwarded.
    key = b"py-wrong-group"
    config = CLUSTER.query()
    owner = config.shards[shard_of(key, len(config.shards))]
    other = next(g for g in config.groups if g != owner)
    wrong = list(config.groups[other].members.values())
    found = CLUSTER.on_group(wrong, lambda a: answered_with(
        lambda: CLUSTER.kv(a).Get(pb.GetRequest(key=key), metadata=ROUTED), KIND.WRONG_GROUP))
    assert found["shoal"].config_num >= 1
    members = CLUSTER.members_of(key)
    leader = CLUSTER.on_group(members, lambda a: (CLUSTER.kv(a).Get(pb.GetRequest(key=key), metadata=ROUTED), a)[1])
    follower = next(a for a in members if a != leader)
    found = expect_error(lambda: CLUSTER.kv(follower).Get(pb.GetRequest(key=key), metadata=ROUTED), KIND.NOT_LEADER)
    assert found["shoal"].leader_addr == leader and "retry_info" in found

    # Write ids: an older one is stale; one reused for another operation
    # conflicts.
    client = random.getrandbits(63)
    put = lambda seq, k: pb.PutRequest(key=k, value=b"v", id=pb.WriteId(client_id=client, seq=seq))
    leader_kv = CLUSTER.kv(leader)
    leader_kv.Put(put(2, key), metadata=ROUTED)
    expect_error(lambda: leader_kv.Put(put(1, key), metadata=ROUTED), KIND.STALE_SEQUENCE)
    delete = pb.DeleteRequest(key=key, id=pb.WriteId(client_id=client, seq=2))
    expect_error(lambda: leader_kv.Delete(delete, metadata=ROUTED), KIND.WRITE_ID_CONFLICT)

    # Administration: only for an administrator; refused, and not yet.
    join = pb.ReconfigureRequest(join=pb.Join(groups={owner: config.groups[owner]}))
    found = expect_error(lambda: CLUSTER.admin(CLUSTER.controller[0]).Reconfigure(join), KIND.PERMISSION_DENIED)
    assert "needs an administrator" in found["shoal"].reason
    found = CLUSTER.on_group(CLUSTER.controller, lambda a: answered_with(
        lambda: CLUSTER.admin(a).Reconfigure(join, metadata=ADMIN), KIND.REFUSED))
    assert "already joined" in found["shoal"].reason
    # Replicas serve each other on peer addresses, which a member's status
    # lists; the client address does not serve the Peer service at all.
    status = CLUSTER.kv(leader).Status(pb.StatusRequest())
    leader_peer = status.peer_members[status.node_id]
    assert leader_peer != leader
    unserved = rpc.PeerStub(CLUSTER.channel(leader))
    try:
        unserved.DropShard(pb.ShardRequest(num=10_000, shard=0))
        raise AssertionError("a client address served the Peer service")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED, error
    peer = rpc.PeerStub(CLUSTER.channel(leader_peer))
    expect_error(lambda: peer.DropShard(pb.ShardRequest(num=10_000, shard=0)), KIND.PERMISSION_DENIED)
    expect_error(lambda: peer.DropShard(pb.ShardRequest(num=10_000, shard=0), metadata=ADMIN), KIND.NOT_YET)

    # Unavailable: a group that lost its majority cannot serve a read.
    lone = os.environ["SHOAL_LONE"].split(",")
    pids = [int(p) for p in os.environ["SHOAL_LONE_PIDS"].split(",")]
    lone_leader = CLUSTER.on_group(lone, lambda a: (CLUSTER.kv(a).Put(pb.PutRequest(key=b"k", value=b"v"), metadata=ROUTED), a)[1])
    for addr, pid in zip(lone, pids):
        if addr != lone_leader:
            os.kill(pid, signal.SIGKILL)
    found = expect_error(
        lambda: CLUSTER.kv(lone_leader).Get(pb.GetRequest(key=b"k"), metadata=ROUTED, timeout=10),
        KIND.UNAVAILABLE,
    )
    assert "retry_info" in found
    assert {KIND.Name(k) for k in KIND.values()} - {"KIND_UNSPECIFIED"} == {
        "NOT_LEADER", "UNAVAILABLE", "KEY_EMPTY", "KEY_TOO_LARGE", "VALUE_TOO_LARGE",
        "STALE_SEQUENCE", "WRITE_ID_CONFLICT", "WRONG_GROUP", "REFUSED", "NOT_YET",
        "SESSION_EXPIRED", "PERMISSION_DENIED",
    }, "a new error kind needs a case here"


def test_a_shard_move_while_writing():
    spec = os.environ["SHOAL_STANDBY"]
    group, members = spec.split("=", 1)
    entries = dict(m.split("=") for m in members.split(","))
    join = pb.ReconfigureRequest(
        join=pb.Join(groups={int(group): pb.Members(members={int(i): a for i, a in entries.items()})})
    )
    written, stop, errors = [], threading.Event(), []

    def writer():
        writer_cluster = Cluster(CLUSTER.controller)
        i = 0
        try:
            while not stop.is_set():
                key, value = f"move-{i:04}".encode(), str(i).encode()
                writer_cluster.put(key, value)
                written.append((key, value))
                i += 1
        except Exception as error:  # reported below
            errors.append(error)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(1)
    before = CLUSTER.query().num
    reply = CLUSTER.on_group(CLUSTER.controller, lambda a: CLUSTER.admin(a).Reconfigure(join, metadata=ADMIN))
    moved = [s for s, g in enumerate(reply.config.shards) if g == int(group)]
    assert reply.config.num > before and len(moved) >= 16, reply.config
    time.sleep(3)
    stop.set()
    thread.join()
    assert not errors, errors
    assert len(written) > 20, len(written)
    for key, value in written:
        assert CLUSTER.get(key) == value, key
    moved_keys = [k for k, _ in written if shard_of(k, 64) in moved]
    assert moved_keys, "some writes landed on moved shards"


# ---------------------------------------------------------------- HTTP/JSON

HTTP = "http://" + os.environ["SHOAL_HTTP"]


def http(method, path, body=None, json_body=None):
    data = json.dumps(json_body).encode() if json_body is not None else body
    request = urllib.request.Request(HTTP + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_json_gateway():
    b64 = lambda b: base64.b64encode(b).decode()
    assert http("PUT", "/v1/kv/web%2Fkey", b"hello") == (200, b"{}")
    assert http("GET", "/v1/kv/web%2Fkey") == (200, b"hello")
    assert CLUSTER.get(b"web/key") == b"hello", "the gateway and gRPC see one store"
    status, body = http("POST", "/v1/kv/web%2Fkey/cas", json_body={"expected": b64(b"hello"), "new": b64(b"bye")})
    assert (status, json.loads(body)) == (200, {"swapped": True, "current": b64(b"hello")})
    status, body = http("GET", "/v1/scan?start=web&end=wec&limit=10")
    assert json.loads(body) == {"entries": [{"key": b64(b"web/key"), "value": b64(b"bye")}]}, body
    status, body = http("DELETE", "/v1/kv/web%2Fkey")
    assert (status, json.loads(body)) == (200, {"existed": True})
    status, body = http("GET", "/v1/kv/web%2Fkey")
    assert status == 404 and json.loads(body)["error"]["kind"] == "NOT_FOUND"
    status, body = http("PUT", "/v1/kv/big", b"x" * 131073)
    error = json.loads(body)["error"]
    assert status == 413 and error["kind"] == "VALUE_TOO_LARGE" and error["limit"] == 131072, body
    status, body = http("PUT", "/v1/kv/", b"x")
    assert status in (400, 404, 405), status
    status, body = http("GET", "/v1/status")
    assert status == 200 and json.loads(body)["role"] in ("leader", "follower"), body
    assert http("GET", "/v1/kv/%00%FF")[0] == 404


def main():
    tests = [(name, fn) for name, fn in globals().items() if name.startswith("test_")]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
            print(f"ok   {name}")
            passed += 1
        except Exception:
            print(f"FAIL {name}")
            traceback.print_exc()
            failed += 1
    print(f"python client: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
