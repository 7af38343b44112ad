"""Independent interop check with Python grpcio, driven by tests/grpcio.rs.

Generates stubs from proto/service.proto, then for each :authority form a driver may send
(localhost as driver v1.6, the raw socket path as drivers <= v1.5.x, and grpcio's own
percent-encoded path) calls Version and Mount, 200 concurrent Mounts on one channel, and
2,000 sequential calls on one channel with varying metadata to churn the HPACK table.

Usage: interop.py SOCKET ATTRIBUTES_JSON_FILE STUB_DIR
Prints one line per check and a closing "N passed, M failed"; exits 1 on any failure.
"""
import concurrent.futures
import json
import os
import sys

socket_path, attributes_file, stub_dir = sys.argv[1], sys.argv[2], sys.argv[3]

from grpc_tools import protoc  # noqa: E402

proto_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")
if protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={stub_dir}", f"--grpc_python_out={stub_dir}", "service.proto"]) != 0:
    sys.exit("protoc failed")
sys.path.insert(0, stub_dir)

import grpc  # noqa: E402
import service_pb2  # noqa: E402
import service_pb2_grpc  # noqa: E402

with open(attributes_file) as f:
    base_attributes = json.load(f)


def mount_request(object_name):
    attrs = dict(base_attributes)
    attrs["objects"] = f"- {{objectName: {object_name}, secretPath: secret/data/app, secretKey: k}}"
    return service_pb2.MountRequest(attributes=json.dumps(attrs), secrets="{}", permission="420")


def check_mount(response, name):
    files = {f.path: f.contents for f in response.files}
    assert files.get(name) == b"v", f"unexpected files {sorted(files)}"
    assert [v.id for v in response.object_version] == [name]


forms = {
    "localhost": [("grpc.default_authority", "localhost")],
    "raw-path": [("grpc.default_authority", socket_path)],
    "percent-encoded (grpcio default)": [],
}
passed = failed = 0


def run(label, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"ok   {label}")
    except Exception as e:  # noqa: BLE001 - report every failure
        failed += 1
        print(f"FAIL {label}: {type(e).__name__}: {e}")


for form, options in forms.items():
    channel = grpc.insecure_channel("unix://" + socket_path, options=options)
    stub = service_pb2_grpc.CSIDriverProviderStub(channel)

    def version():
        r = stub.Version(service_pb2.VersionRequest(version="v1alpha1"), timeout=10)
        assert r.version == "v1alpha1" and r.runtime_name == "vault-csi-provider", r

    def mount():
        check_mount(stub.Mount(mount_request("first"), timeout=30), "first")

    def many_at_once():
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            futures = {pool.submit(stub.Mount, mount_request(f"c{i}"), timeout=60): i for i in range(200)}
            for fut in concurrent.futures.as_completed(futures):
                check_mount(fut.result(), f"c{futures[fut]}")

    def sequential():
        for i in range(2000):
            metadata = [("x-request-id", f"req-{i:06}-" + "p" * (i % 97)), (f"x-churn-{i % 37}", str(i))]
            if i % 100 == 0:
                check_mount(stub.Mount(mount_request(f"s{i}"), metadata=metadata, timeout=30), f"s{i}")
            else:
                stub.Version(service_pb2.VersionRequest(version="v1alpha1"), metadata=metadata, timeout=10)

    run(f"[{form}] Version", version)
    run(f"[{form}] Mount", mount)
    run(f"[{form}] 200 concurrent Mounts on one channel", many_at_once)
    run(f"[{form}] 2000 sequential calls with varying metadata on one channel", sequential)
    channel.close()

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
