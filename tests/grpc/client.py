"""A gRPC client that is not micro: Python's grpcio, with stubs that
grpcio-tools generates from tests/proto/echo.proto, and the standard health
and reflection clients. Prints one line per check; the Rust test
(tests/tests/grpc.rs) asserts on them.

Usage: client.py HOST:PORT PROTO_DIR
"""
import importlib
import sys
import tempfile

import grpc
from grpc_tools import protoc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

addr, proto_dir = sys.argv[1], sys.argv[2]
out = tempfile.mkdtemp()
if protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}", "echo.proto"]) != 0:
    sys.exit("protoc failed")
sys.path.insert(0, out)
echo_pb2 = importlib.import_module("echo_pb2")
echo_pb2_grpc = importlib.import_module("echo_pb2_grpc")

channel = grpc.insecure_channel(addr)
stub = echo_pb2_grpc.EchoStub(channel)
Req = echo_pb2.EchoRequest

reply = stub.Say(Req(text="hello"), metadata=[("x-tenant", "acme")], timeout=10)
print("unary:", reply.text, reply.tenant)

print("server streaming:", " ".join(str(r.index) for r in stub.Repeat(Req(text="r", times=3), timeout=10)))

print("client streaming:", stub.Collect(iter([Req(text=t) for t in "abc"]), timeout=10).text)

print("bidirectional:", " ".join(r.text for r in stub.Chat(iter([Req(text=t) for t in ["one", "two", "three"]]), timeout=10)))

gzipped = grpc.insecure_channel(addr, compression=grpc.Compression.Gzip)
compressed = echo_pb2_grpc.EchoStub(gzipped)
print("gzip unary:", len(compressed.Say(Req(text="g" * 500), timeout=10).text))
print("gzip client streaming:", compressed.Collect(iter([Req(text=t) for t in "xyz"]), timeout=10).text)
print("gzip health:", health_pb2.HealthCheckResponse.ServingStatus.Name(
    health_pb2_grpc.HealthStub(gzipped).Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status))

try:
    stub.Say(Req(text="slow", delay_ms=5000), timeout=0.2)
    print("deadline: none")
except grpc.RpcError as e:
    print("deadline:", e.code().name)

try:
    channel.unary_unary("/echo.v1.Echo/Nope")(b"", timeout=10)
    print("unknown method: answered")
except grpc.RpcError as e:
    print("unknown method:", e.code().name)

try:
    stub.Say(Req(text="x", fail_code=404), timeout=10)
except grpc.RpcError as e:
    print("not found:", e.code().name, e.details())

health = health_pb2_grpc.HealthStub(channel)
status = health.Check(health_pb2.HealthCheckRequest(service="echo.v1.Echo"), timeout=10)
print("health:", health_pb2.HealthCheckResponse.ServingStatus.Name(status.status))
watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
print("health watch:", health_pb2.HealthCheckResponse.ServingStatus.Name(next(watch).status))
watch.cancel()
unknown = health.Watch(health_pb2.HealthCheckRequest(service="nope.Nope"), timeout=10)
print("health watch unknown:", health_pb2.HealthCheckResponse.ServingStatus.Name(next(unknown).status))
unknown.cancel()

db = ProtoReflectionDescriptorDatabase(channel)
services = db.get_services()
print("reflection services:", " ".join(s for s in services if s in ("echo.v1.Echo", "grpc.health.v1.Health")))
desc = db.FindFileContainingSymbol("echo.v1.Echo")
from google.protobuf.descriptor_pool import DescriptorPool
pool = DescriptorPool(db)
service = pool.FindServiceByName("echo.v1.Echo")
print("reflection methods:", " ".join(sorted(m.name for m in service.methods)))
