"""Regenerate the Python code of protos/ (one command: `make proto`).

- `agentflow_grpc/_gen/`: messages and gRPC stubs (grpcio-tools' protoc), with mypy stubs
  (mypy-protobuf), and `agentflow_grpc/_gen/descriptor_set.binpb`, the FileDescriptorSet with
  imports, source info and the google.rpc error details (Envoy's gRPC-JSON transcoder and server
  reflection read it).
- `clients/python/src/agentflow_client/_gen/`: the client's typed dataclasses and asyncio stubs
  (betterproto2-compiler's protoc plugin, grpclib clients only), with the google.protobuf
  well-known types the compiler generates beside them (Timestamp as datetime, Struct with
  from_dict/to_dict). google/api is dropped: protos/ use it for options only, nothing imports it.
- `build/proto-deps/`: the googleapis protos (google/api, google/rpc) that protos/ imports, copied
  from the installed googleapis-common-protos package so that `buf lint` can resolve them offline.
  Nothing of googleapis is kept in the repository.

`--check` regenerates into a temporary directory and fails if `agentflow_grpc/_gen` or the
client's `_gen` differs (the test suite runs it). Generated files are never edited by hand.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GENERATED = ROOT / "agentflow_grpc" / "_gen"
CLIENT_GENERATED = ROOT / "clients" / "python" / "src" / "agentflow_client" / "_gen"
DEPS = ROOT / "build" / "proto-deps"
GOOGLEAPIS = ("google/api", "google/rpc")
# Not imported by protos/, but in the descriptor set: the error details our statuses carry, so
# that Envoy's transcoder can print them as JSON (and reflection can describe them).
ERROR_DETAIL_PROTOS = ("google/rpc/status.proto", "google/rpc/error_details.proto")
# protoc writes `from agentflow.v1 import x_pb2`; the code lives in agentflow_grpc._gen.
_IMPORT = re.compile(r"^from agentflow\.v1 import ", re.MULTILINE)
# betterproto2 generates every package protoc hands it, imports included; these are not imported.
_CLIENT_UNUSED = ("google/api",)
_PACKAGE_DOC = '"""Generated from protos/ by scripts/generate_protos.py. Never edit by hand."""\n'


def googleapis_root() -> Path:
    """The directory holding google/api/*.proto (googleapis-common-protos installs them)."""
    from google.api import annotations_pb2

    return Path(annotations_pb2.__file__).resolve().parent.parent.parent


def proto_files() -> list[Path]:
    return sorted(PROTOS.rglob("*.proto"))


def proto_paths() -> list[str]:
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    return [f"--proto_path={folder}" for folder in (PROTOS, googleapis_root(), well_known)]


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    sources = [str(path.relative_to(PROTOS)) for path in proto_files()]
    arguments = [
        "grpc_tools.protoc",
        *proto_paths(),
        f"--plugin=protoc-gen-mypy={Path(sys.executable).parent / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={Path(sys.executable).parent / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *sources,
    ]
    if protoc.main(arguments) != 0:
        raise SystemExit("protoc failed")
    descriptor_set = [
        "grpc_tools.protoc",
        *proto_paths(),
        f"--descriptor_set_out={out / 'descriptor_set.binpb'}",
        "--include_imports",
        "--include_source_info",
        *sources,
        *ERROR_DETAIL_PROTOS,
    ]
    if protoc.main(descriptor_set) != 0:
        raise SystemExit("protoc (descriptor set) failed")
    for path in (out / "agentflow" / "v1").glob("*.py*"):
        text = _IMPORT.sub("from agentflow_grpc._gen.agentflow.v1 import ", path.read_text())
        path.write_text(text)
    for package in (out, out / "agentflow", out / "agentflow" / "v1"):
        (package / "__init__.py").write_text(_PACKAGE_DOC)


def generate_client(out: Path) -> None:
    """The plugin pipes its code through `ruff check --fix` and `ruff format` from PATH, reading
    the ruff config of its working directory: it runs from ROOT (the root's config, wherever `out`
    is) with this environment's ruff first on PATH, so that `--check` sees the same bytes."""
    out.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    sources = [str(path.relative_to(PROTOS)) for path in proto_files()]
    arguments = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        *proto_paths(),
        f"--plugin=protoc-gen-python_betterproto2={bin_dir / 'protoc-gen-python_betterproto2'}",
        f"--python_betterproto2_out={out}",
        "--python_betterproto2_opt=client_generation=async",
        *sources,
    ]
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(arguments, cwd=ROOT, env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit("protoc (betterproto2) failed")
    for unused in _CLIENT_UNUSED:
        shutil.rmtree(out / unused)
        alias = f"__{unused.replace('/', '__')}__"  # how betterproto2 names an imported package
        for path in out.rglob("*.py"):
            if alias in path.read_text():
                raise SystemExit(f"{path} imports {unused}, which _CLIENT_UNUSED drops")
    for package in out.rglob("__init__.py"):
        if not package.read_text():
            package.write_text(_PACKAGE_DOC)


# Each generated folder, with the function that writes it.
TARGETS: tuple[tuple[Path, Callable[[Path], None]], ...] = (
    (GENERATED, generate),
    (CLIENT_GENERATED, generate_client),
)


def copy_googleapis() -> None:
    shutil.rmtree(DEPS, ignore_errors=True)
    for folder in GOOGLEAPIS:
        target = DEPS / folder
        target.mkdir(parents=True)
        for proto in (googleapis_root() / folder).glob("*.proto"):
            shutil.copy2(proto, target / proto.name)


def differences(left: Path, right: Path) -> list[str]:
    comparison = filecmp.dircmp(left, right, ignore=["__pycache__"])
    found = [f"only in {comparison.left}: {name}" for name in comparison.left_only]
    found += [f"only in {comparison.right}: {name}" for name in comparison.right_only]
    found += [f"differs: {Path(comparison.left) / name}" for name in comparison.diff_files]
    for sub in comparison.common_dirs:
        found += differences(left / sub, right / sub)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the generated code is stale")
    args = parser.parse_args()
    copy_googleapis()
    if not args.check:
        for target, write in TARGETS:
            shutil.rmtree(target, ignore_errors=True)
            write(target)
            print(f"generated {target.relative_to(ROOT)} from {len(proto_files())} protos")
        return 0
    stale: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        for index, (target, write) in enumerate(TARGETS):
            fresh = Path(scratch) / str(index) / "_gen"
            write(fresh)
            if target.exists():
                stale += differences(target, fresh)
            else:
                stale.append(f"no generated code in {target.relative_to(ROOT)}")
    if stale:
        print("generated code is stale; run `make proto`:", *stale, sep="\n  ", file=sys.stderr)
        return 1
    print("generated code is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
