#!/bin/sh
# Generates Python messages and gRPC stubs of the operator API from this repository's contracts,
# with Debian's toolchain only: apt-get install protobuf-compiler protobuf-compiler-grpc
# libprotobuf-dev python3-grpcio python3-protobuf. See docs/api.md.
#
#   sh docs/examples/python/generate.sh <output dir>
set -eu
out=${1:?usage: generate.sh <output dir>}
repo=$(cd "$(dirname "$0")/../../.." && pwd)
mkdir -p "$out"
cd "$repo/proto"
# vendor/ holds protovalidate's rules (imported by every contract); /usr/include the well-known types.
protoc -I . -I vendor -I /usr/include \
  --python_out="$out" --grpc_out="$out" --plugin=protoc-gen-grpc="$(command -v grpc_python_plugin)" \
  myosicam/panel/v1/*.proto myosicam/agent/v1/agent.proto myosicam/agent/v1/snapshot.proto \
  buf/validate/validate.proto
