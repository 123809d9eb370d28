"""List the fleet over gRPC, signed as a MyOsicam API client (docs/api.md).

    MYOSICAM_TARGET=panel.example.com:8443 MYOSICAM_CLIENT_ID=ac_... MYOSICAM_SECRET=... \
    MYOSICAM_CA=panel.crt MYOSICAM_GENERATED=./gen python3 list_servers.py

Every call carries X-Caller-Id, X-Timestamp, X-Nonce and X-Signature as gRPC metadata. The body
hash is over the gRPC-framed request as it travels: one byte (0, not compressed), the message
length as 4 bytes big-endian, then the serialized message.
"""

import collections
import hashlib
import hmac
import json
import os
import secrets
import struct
import sys
import time

import grpc

sys.path.insert(0, os.environ.get("MYOSICAM_GENERATED", "gen"))
from myosicam.panel.v1 import auth_pb2, auth_pb2_grpc, server_pb2, server_pb2_grpc  # noqa: E402


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class Signer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Signs every call as docs/hmac.md describes, over the gRPC-framed body."""

    def __init__(self, client_id, secret):
        self.client_id = client_id
        self.secret = secret.encode("utf-8")

    def _signed(self, details, request):
        message = request.SerializeToString()
        framed = b"\x00" + struct.pack(">I", len(message)) + message
        timestamp = str(int(time.time()))
        nonce = secrets.token_hex(16)
        canonical = "\n".join(
            ["MYOSICAM-HMAC-SHA256", self.client_id, timestamp, nonce, details.method, hashlib.sha256(framed).hexdigest()]
        )
        signature = hmac.new(self.secret, canonical.encode("utf-8"), hashlib.sha256).hexdigest()
        metadata = list(details.metadata or []) + [
            ("x-caller-id", self.client_id),
            ("x-timestamp", timestamp),
            ("x-nonce", nonce),
            ("x-signature", signature),
        ]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials, details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._signed(details, request), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._signed(details, request), request)


def main():
    with open(os.environ["MYOSICAM_CA"], "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    channel = grpc.intercept_channel(
        grpc.secure_channel(os.environ["MYOSICAM_TARGET"], credentials),
        Signer(os.environ["MYOSICAM_CLIENT_ID"], os.environ["MYOSICAM_SECRET"]),
    )
    me = auth_pb2_grpc.AuthServiceStub(channel).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=30)
    print(json.dumps({"whoami": me.name}))
    servers = server_pb2_grpc.ServerServiceStub(channel)
    token = ""
    while True:
        page = servers.ListServers(server_pb2.ListServersRequest(page_size=100, page_token=token), timeout=30)
        for server in page.servers:
            print(json.dumps({"name": server.name, "status": server_pb2.ServerStatus.Name(server.status)}))
        token = page.next_page_token
        if not token:
            break


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as err:
        print(f"{err.code().name}: {err.details()}", file=sys.stderr)
        sys.exit(1)
